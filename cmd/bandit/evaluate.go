package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/cmd/internal/evaluation"
	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/sampler/ope"
	"github.com/banditstream/banditstream/schemas"
)

// evaluateCommand joins a decisions topic with the interactions that
// followed each decision and estimates what other policies would have
// earned on the same decisions.
func evaluateCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, io.Reader, io.Writer, io.Writer) error {
	k := &conns.Kafka
	decisionsTopic := fs.String("decisions-topic", "decisions", "topic of the decisions (bandit-score -decisions-topic)")
	eventsTopic := fs.String("events-topic", config.TopicInteractions, "topic of the interactions that are the rewards")
	from := fs.String("from", "earliest", "first decision: earliest, an offset, or a time (RFC 3339)")
	to := fs.String("to", "end", "end of the decisions (exclusive): end, an offset, or a time")
	window := fs.Duration("window", 30*time.Minute, "attribution window: a reward event on a shown item by the same user in the same context counts for the latest decision that showed it, within this long after it")
	rewardTypes := fs.String("reward-types", "click,order", "event types that count as a reward, comma separated (wishlist, add_to_cart too)")
	slots := fs.String("slots", "top1", "position model: top1 (the first slot's reward), or position weights of the first slots, comma separated (1,0.5,0.33: three slots)")
	var policies evaluation.Policies
	fs.Var(&policies, "policy", "a policy to evaluate: logged, mean, uniform, or name=flags of the scorer (-mode thompson|mean, -prior-alpha, -prior-beta), e.g. 'strong prior=-prior-alpha 2 -prior-beta 40'; repeat for more (default logged, mean, uniform)")
	d := ope.DefaultConfig()
	draws := fs.Int("draws", d.Draws, "Monte Carlo rankings per decision behind a Thompson policy's probabilities")
	bootstrap := fs.Int("bootstrap", d.Bootstrap, "bootstrap resamples behind each interval")
	level := fs.Float64("level", d.Level, "confidence level of the intervals")
	seed := fs.Uint64("seed", 1, "seed of the bootstrap")
	jsonOut := fs.String("json", "", "also write the estimates as JSON to this file")
	progress := fs.String("progress", "auto", "progress bar on stderr: auto (when stderr is a terminal), always or never")
	return func(ctx context.Context, _ io.Reader, stdout, stderr io.Writer) error {
		fromPos, toPos, err := parseRange(*from, *to)
		if err != nil {
			return err
		}
		types, err := parseRewardTypes(*rewardTypes)
		if err != nil {
			return err
		}
		weights, err := parseSlots(*slots)
		if err != nil {
			return err
		}
		if len(policies) == 0 {
			policies = evaluation.DefaultPolicies()
		}
		client, dialer, err := k.Clients()
		if err != nil {
			return err
		}
		src := evaluation.Reader{Brokers: k.Brokers, Client: client, Dialer: dialer}
		var decisions []*schemas.Decision
		seen := map[string]bool{}
		drange, err := src.Plan(ctx, *decisionsTopic, fromPos, toPos)
		if err != nil {
			return err
		}
		var bad, records int
		bar := newProgressBar(stderr, evaluation.Total(drange), *progress)
		err = src.Read(ctx, *decisionsTopic, drange, bar.add, func(m kafka.Message) {
			records++
			d := &schemas.Decision{}
			if schemas.Protobuf.DecodeDecision(schemas.DefaultLimits(), m.Value, d) != nil {
				bad++
				return
			}
			if !seen[d.GetRequestId()] { // a request answered twice is one decision
				seen[d.GetRequestId()] = true
				decisions = append(decisions, d)
			}
		})
		bar.stop()
		if err != nil {
			return err
		}
		if len(decisions) == 0 {
			return fmt.Errorf("no decisions in %s between %s and %s", *decisionsTopic, *from, *to)
		}
		// The rewards: the interactions from the first decision on.
		first := slices.MinFunc(decisions, func(a, b *schemas.Decision) int { return int(a.GetDecidedTimeMs() - b.GetDecidedTimeMs()) })
		erange, err := src.Plan(ctx, *eventsTopic, consumers.Position{Time: time.UnixMilli(first.GetDecidedTimeMs())}, consumers.End)
		if err != nil {
			return err
		}
		rewards := evaluation.Rewards{}
		bar = newProgressBar(stderr, evaluation.Total(erange), *progress)
		err = src.Read(ctx, *eventsTopic, erange, bar.add, func(m kafka.Message) {
			codec, err := schemas.CodecFor(evaluation.ContentType(m.Headers))
			ev := &schemas.Interaction{}
			if err != nil || codec.DecodeInteraction(schemas.DefaultLimits(), m.Value, ev) != nil || !types[ev.GetType()] {
				return
			}
			rewards.Add(ev)
		})
		bar.stop()
		if err != nil {
			return err
		}
		log, skipped := evaluation.Join(decisions, rewards, *window, len(weights))
		if len(log) == 0 {
			return fmt.Errorf("none of %d decisions can be evaluated (%d without propensities or shown items)", len(decisions), skipped)
		}
		cfg := ope.Config{Weights: weights, Draws: *draws, Bootstrap: *bootstrap, Level: *level, Seed: *seed}
		est, err := ope.Evaluate(cfg, log, policies)
		if err != nil {
			return err
		}
		report := evaluationReport{Decisions: len(log), Skipped: skipped, Undecodable: bad, Duplicates: records - bad - len(decisions),
			Window: window.String(), Slots: weights, Observed: ope.Observed(cfg, log), Estimates: est}
		report.print(stdout, *level)
		if *jsonOut != "" {
			b, err := json.MarshalIndent(report, "", "  ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

// evaluationReport is what evaluate prints and writes.
type evaluationReport struct {
	Decisions   int            `json:"decisions"`
	Skipped     int            `json:"skipped"`
	Undecodable int            `json:"undecodable"`
	Duplicates  int            `json:"duplicates"`
	Window      string         `json:"window"`
	Slots       []float64      `json:"position_weights"`
	Observed    float64        `json:"observed_reward"`
	Estimates   []ope.Estimate `json:"estimates"`
}

func (e evaluationReport) print(w io.Writer, level float64) {
	fmt.Fprintf(w, "%d decisions (%d logged twice counted once; %d without propensities or shown items and %d undecodable left out), attribution window %s, position weights %v\n",
		e.Decisions, e.Duplicates, e.Skipped, e.Undecodable, e.Window, e.Slots)
	fmt.Fprintf(w, "observed reward per decision of the logged policy: %.4f\n", e.Observed)
	fmt.Fprintf(w, "estimated reward per decision, %.0f%% bootstrap intervals:\n", 100*level)
	fmt.Fprintf(w, "%-24s %-26s %-26s %-26s\n", "policy", "IPS", "SNIPS", "DR")
	cell := func(i ope.Interval) string { return fmt.Sprintf("%.4f [%.4f, %.4f]", i.Value, i.Low, i.High) }
	for _, est := range e.Estimates {
		fmt.Fprintf(w, "%-24s %-26s %-26s %-26s\n", est.Policy, cell(est.IPS), cell(est.SNIPS), cell(est.DR))
	}
}

func parseRewardTypes(s string) (map[schemas.EventType]bool, error) {
	out := map[schemas.EventType]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		t, ok := schemas.ParseEventType(f)
		if !ok || t == schemas.Impression {
			return nil, fmt.Errorf("-reward-types: %q is not click, wishlist, add_to_cart or order", f)
		}
		out[t] = true
	}
	if len(out) == 0 {
		return nil, errors.New("-reward-types: none given")
	}
	return out, nil
}

func parseSlots(s string) ([]float64, error) {
	if s == "top1" {
		return []float64{1}, nil
	}
	var out []float64
	for _, f := range strings.Split(s, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(x >= 0) || x > 1e6 {
			return nil, fmt.Errorf("-slots: %q is not top1 or non-negative weights", s)
		}
		out = append(out, x)
	}
	return out, nil
}
