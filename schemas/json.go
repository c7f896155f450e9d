package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// The JSON form, for humans and shell producers. Field names are those of
// the .proto file; event types and modes are lower-case words ("click",
// "add_to_cart", "mean"). Unknown fields are ignored, as in protobuf.
//
//	{"event_id":"e-1","user_id":"u-1","item_id":"sku-9","context":"home",
//	 "type":"click","event_time_ms":1767225600000}

type interactionJSON struct {
	EventID     string            `json:"event_id"`
	UserID      string            `json:"user_id"`
	ItemID      string            `json:"item_id"`
	Context     string            `json:"context,omitempty"`
	Type        string            `json:"type"`
	EventTimeMs int64             `json:"event_time_ms"`
	SessionID   string            `json:"session_id,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	Value       float64           `json:"value,omitempty"`
}

type scoreRequestJSON struct {
	RequestID  string   `json:"request_id"`
	UserID     string   `json:"user_id"`
	Context    string   `json:"context,omitempty"`
	Candidates []string `json:"candidates"`
	K          int32    `json:"k"`
	DeadlineMs int64    `json:"deadline_ms,omitempty"`
	ReplyTopic string   `json:"reply_topic,omitempty"`
	Mode       string   `json:"mode,omitempty"`
	Seed       *uint64  `json:"seed,omitempty"`
	SentTimeMs int64    `json:"sent_time_ms,omitempty"`
	Explain    bool     `json:"explain,omitempty"`
	// Propensities asks for each ranked item's propensities.
	Propensities bool `json:"propensities,omitempty"`
}

type rankedItemJSON struct {
	ItemID         string           `json:"item_id"`
	Score          float64          `json:"score"`
	Mean           float64          `json:"mean"`
	Explanation    *explanationJSON `json:"explanation,omitempty"`
	Propensity     float64          `json:"propensity,omitempty"`
	TopKPropensity float64          `json:"topk_propensity,omitempty"`
}

type explanationJSON struct {
	Alpha     float64 `json:"alpha"`
	Beta      float64 `json:"beta"`
	Source    string  `json:"source,omitempty"`
	UserAlpha float64 `json:"user_alpha,omitempty"`
	UserBeta  float64 `json:"user_beta,omitempty"`
}

type timingJSON struct {
	SentTimeMs     int64 `json:"sent_time_ms,omitempty"`
	ReceivedTimeMs int64 `json:"received_time_ms,omitempty"`
	ScoredTimeMs   int64 `json:"scored_time_ms,omitempty"`
	ScoringMicros  int64 `json:"scoring_micros,omitempty"`
	QueueMicros    int64 `json:"queue_micros,omitempty"`
	LookupMicros   int64 `json:"lookup_micros,omitempty"`
	SamplingMicros int64 `json:"sampling_micros,omitempty"`
}

type scoreResponseJSON struct {
	RequestID    string           `json:"request_id"`
	UserID       string           `json:"user_id,omitempty"`
	Context      string           `json:"context,omitempty"`
	Items        []rankedItemJSON `json:"items"`
	ModelVersion string           `json:"model_version,omitempty"`
	Timing       *timingJSON      `json:"timing,omitempty"`
	Mode         string           `json:"mode,omitempty"`
	Seed         *uint64          `json:"seed,omitempty"`
}

type decisionJSON struct {
	RequestID       string           `json:"request_id"`
	UserID          string           `json:"user_id,omitempty"`
	Context         string           `json:"context,omitempty"`
	Candidates      []string         `json:"candidates"`
	Alpha           []float64        `json:"alpha"`
	Beta            []float64        `json:"beta"`
	Items           []rankedItemJSON `json:"items"`
	K               int32            `json:"k"`
	Mode            string           `json:"mode,omitempty"`
	Seed            uint64           `json:"seed"`
	ModelVersion    string           `json:"model_version,omitempty"`
	DecidedTimeMs   int64            `json:"decided_time_ms"`
	PropensityDraws int32            `json:"propensity_draws,omitempty"`
}

// reasonMissing is the reason of a required field left out.
const reasonMissing = "missing"

func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return invalid("message", "malformed JSON: %v", err)
	}
	if dec.More() {
		return invalid("message", "malformed JSON: data after the object")
	}
	return nil
}

func appendJSON(buf []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return buf, fmt.Errorf("encoding JSON: %w", err)
	}
	return append(buf, b...), nil
}

func decodeInteractionJSON(data []byte, m *Interaction) error {
	var j interactionJSON
	if err := decodeJSON(data, &j); err != nil {
		return err
	}
	if j.Type == "" {
		return invalid("type", reasonMissing)
	}
	t, ok := ParseEventType(j.Type)
	if !ok {
		return invalid("type", "unknown event type %.32q (impression, click, wishlist, add_to_cart, order)", j.Type)
	}
	m.Reset()
	m.EventId, m.UserId, m.ItemId, m.Context = j.EventID, j.UserID, j.ItemID, j.Context
	m.Type, m.EventTimeMs, m.SessionId = t, j.EventTimeMs, j.SessionID
	m.Attributes, m.Value = j.Attributes, j.Value
	return nil
}

func interactionToJSON(m *Interaction) interactionJSON {
	return interactionJSON{
		EventID: m.GetEventId(), UserID: m.GetUserId(), ItemID: m.GetItemId(), Context: m.GetContext(),
		Type: EventTypeName(m.GetType()), EventTimeMs: m.GetEventTimeMs(), SessionID: m.GetSessionId(),
		Attributes: m.GetAttributes(), Value: m.GetValue(),
	}
}

func decodeScoreRequestJSON(data []byte, m *ScoreRequest) error {
	var j scoreRequestJSON
	if err := decodeJSON(data, &j); err != nil {
		return err
	}
	mode, ok := ParseMode(j.Mode)
	if !ok {
		return invalid("mode", "unknown exploration mode %.32q (thompson, mean)", j.Mode)
	}
	m.Reset()
	m.RequestId, m.UserId, m.Context, m.Candidates, m.K = j.RequestID, j.UserID, j.Context, j.Candidates, j.K
	m.DeadlineMs, m.ReplyTopic, m.Mode, m.Seed, m.SentTimeMs = j.DeadlineMs, j.ReplyTopic, mode, j.Seed, j.SentTimeMs
	m.Explain, m.Propensities = j.Explain, j.Propensities
	return nil
}

func scoreRequestToJSON(m *ScoreRequest) scoreRequestJSON {
	j := scoreRequestJSON{
		RequestID: m.GetRequestId(), UserID: m.GetUserId(), Context: m.GetContext(), Candidates: m.GetCandidates(),
		K: m.GetK(), DeadlineMs: m.GetDeadlineMs(), ReplyTopic: m.GetReplyTopic(), Mode: ModeName(m.GetMode()),
		SentTimeMs: m.GetSentTimeMs(), Explain: m.GetExplain(), Propensities: m.GetPropensities(),
	}
	if m.Seed != nil {
		s := *m.Seed
		j.Seed = &s
	}
	return j
}

func decodeScoreResponseJSON(data []byte, m *ScoreResponse) error {
	var j scoreResponseJSON
	if err := decodeJSON(data, &j); err != nil {
		return err
	}
	mode, ok := ParseMode(j.Mode)
	if !ok {
		return invalid("mode", "unknown exploration mode %.32q (thompson, mean)", j.Mode)
	}
	m.Reset()
	m.RequestId, m.UserId, m.Context, m.ModelVersion, m.Mode, m.Seed = j.RequestID, j.UserID, j.Context, j.ModelVersion, mode, j.Seed
	var err error
	if m.Items, err = rankedItemsFromJSON(j.Items); err != nil {
		return err
	}
	if j.Timing != nil {
		m.Timing = &Timing{SentTimeMs: j.Timing.SentTimeMs, ReceivedTimeMs: j.Timing.ReceivedTimeMs,
			ScoredTimeMs: j.Timing.ScoredTimeMs, ScoringMicros: j.Timing.ScoringMicros,
			QueueMicros: j.Timing.QueueMicros, LookupMicros: j.Timing.LookupMicros, SamplingMicros: j.Timing.SamplingMicros}
	}
	return nil
}

func scoreResponseToJSON(m *ScoreResponse) scoreResponseJSON {
	j := scoreResponseJSON{
		RequestID: m.GetRequestId(), UserID: m.GetUserId(), Context: m.GetContext(),
		Items: rankedItemsToJSON(m.GetItems()), ModelVersion: m.GetModelVersion(), Mode: ModeName(m.GetMode()),
	}
	if t := m.GetTiming(); t != nil {
		j.Timing = &timingJSON{SentTimeMs: t.GetSentTimeMs(), ReceivedTimeMs: t.GetReceivedTimeMs(),
			ScoredTimeMs: t.GetScoredTimeMs(), ScoringMicros: t.GetScoringMicros(),
			QueueMicros: t.GetQueueMicros(), LookupMicros: t.GetLookupMicros(), SamplingMicros: t.GetSamplingMicros()}
	}
	if m.Seed != nil {
		s := *m.Seed
		j.Seed = &s
	}
	return j
}

func rankedItemsFromJSON(items []rankedItemJSON) ([]*RankedItem, error) {
	if len(items) == 0 {
		return nil, nil
	}
	out := make([]*RankedItem, len(items))
	for i, it := range items {
		out[i] = &RankedItem{ItemId: it.ItemID, Score: it.Score, Mean: it.Mean, Propensity: it.Propensity, TopkPropensity: it.TopKPropensity}
		if e := it.Explanation; e != nil {
			src, ok := ParseSource(e.Source)
			if !ok {
				return nil, invalid("explanation", "unknown posterior source %.32q (cache, hot, prior)", e.Source)
			}
			out[i].Explanation = &Explanation{Alpha: e.Alpha, Beta: e.Beta, Source: src, UserAlpha: e.UserAlpha, UserBeta: e.UserBeta}
		}
	}
	return out, nil
}

func rankedItemsToJSON(items []*RankedItem) []rankedItemJSON {
	out := make([]rankedItemJSON, len(items))
	for i, it := range items {
		out[i] = rankedItemJSON{ItemID: it.GetItemId(), Score: finite(it.GetScore()), Mean: finite(it.GetMean()),
			Propensity: finite(it.GetPropensity()), TopKPropensity: finite(it.GetTopkPropensity())}
		if e := it.GetExplanation(); e != nil {
			out[i].Explanation = &explanationJSON{Alpha: finite(e.GetAlpha()), Beta: finite(e.GetBeta()), Source: SourceName(e.GetSource()),
				UserAlpha: finite(e.GetUserAlpha()), UserBeta: finite(e.GetUserBeta())}
		}
	}
	return out
}

func decodeDecisionJSON(data []byte, m *Decision) error {
	var j decisionJSON
	if err := decodeJSON(data, &j); err != nil {
		return err
	}
	mode, ok := ParseMode(j.Mode)
	if !ok {
		return invalid("mode", "unknown exploration mode %.32q (thompson, mean)", j.Mode)
	}
	if len(j.Alpha) != len(j.Candidates) || len(j.Beta) != len(j.Candidates) {
		return invalid("alpha", "%d alphas and %d betas for %d candidates", len(j.Alpha), len(j.Beta), len(j.Candidates))
	}
	m.Reset()
	m.RequestId, m.UserId, m.Context, m.Candidates, m.Alpha, m.Beta = j.RequestID, j.UserID, j.Context, j.Candidates, j.Alpha, j.Beta
	m.K, m.Mode, m.Seed, m.ModelVersion, m.DecidedTimeMs, m.PropensityDraws = j.K, mode, j.Seed, j.ModelVersion, j.DecidedTimeMs, j.PropensityDraws
	var err error
	m.Items, err = rankedItemsFromJSON(j.Items)
	return err
}

func decisionToJSON(m *Decision) decisionJSON {
	j := decisionJSON{
		RequestID: m.GetRequestId(), UserID: m.GetUserId(), Context: m.GetContext(), Candidates: m.GetCandidates(),
		Alpha: make([]float64, len(m.GetAlpha())), Beta: make([]float64, len(m.GetBeta())), Items: rankedItemsToJSON(m.GetItems()),
		K: m.GetK(), Mode: ModeName(m.GetMode()), Seed: m.GetSeed(), ModelVersion: m.GetModelVersion(),
		DecidedTimeMs: m.GetDecidedTimeMs(), PropensityDraws: m.GetPropensityDraws(),
	}
	for i, a := range m.GetAlpha() {
		j.Alpha[i] = finite(a)
	}
	for i, b := range m.GetBeta() {
		j.Beta[i] = finite(b)
	}
	return j
}

// finite maps values JSON cannot carry to 0; the scorer never produces them.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
