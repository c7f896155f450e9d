package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/state"
)

// The same events in protobuf, the simple JSON form and protobuf's
// canonical JSON (protojson's output, with lowerCamelCase and with the
// .proto's names) are all counted; requests in each form are scored alike
// and answered in their own form; a request's W3C traceparent comes back
// on its response.
func TestEveryWireFormOnTheStack(t *testing.T) {
	e := newCLIEnv(t)
	forms := []schemas.Codec{schemas.Protobuf, schemas.JSON, schemas.ProtoJSON, schemas.ProtoJSONNames}
	now := time.Now().Add(-time.Hour).UnixMilli()
	var msgs []kafka.Message
	want := map[state.Arm]state.Counts{}
	for f, form := range forms {
		for i, item := range []string{"f-a", "f-b"} {
			for j := range 10 * (i + 1) {
				ev := &schemas.Interaction{EventId: fmt.Sprintf("%v-%s-%d", form, item, j), UserId: "u" + fmt.Sprint(j%3), ItemId: item,
					Context: "forms", Type: schemas.Impression, EventTimeMs: now + int64(f*100+j)}
				if j < 8 {
					ev.Type = schemas.Click
				}
				v, err := form.AppendInteraction(nil, ev)
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, kafka.Message{Key: []byte(ev.GetUserId()), Value: v,
					Headers: []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte(form.ContentType())}}})
				c := want[state.Arm{Context: "forms", Item: item}]
				c.ByType[state.TypeIndex(ev.GetType())]++
				want[state.Arm{Context: "forms", Item: item}] = c
			}
		}
	}
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range msgs {
		msgs[i].Topic = e.events
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	e.checkCounts(t, want) // every form counted: four times each arm's events

	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	var reqs []kafka.Message
	for _, form := range forms {
		req := &schemas.ScoreRequest{RequestId: "form-" + form.String(), UserId: "probe", Context: "forms",
			Candidates: []string{"f-b", "f-a", "f-new"}, K: 3, Mode: schemas.ModeMean}
		v, err := form.AppendScoreRequest(nil, req)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, kafka.Message{Topic: e.requests, Key: []byte(req.GetUserId()), Value: v, Headers: []kafka.Header{
			{Key: schemas.HeaderContentType, Value: []byte(form.ContentType())}, {Key: consumers.HeaderTraceparent, Value: []byte(parent)}}})
	}
	if err := w.WriteMessages(ctx, reqs...); err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.results, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	fragments := map[string]string{"form-protobuf": "", "form-json": `"request_id":"form-json"`,
		"form-protojson": `"requestId":"form-protojson"`, "form-protojson-names": `"request_id":"form-protojson-names"`}
	var rankings []string
	for len(rankings) < len(forms) {
		m, resp := readResponse(ctx, t, r)
		id := resp.GetRequestId()
		if frag := fragments[id]; frag != "" && !strings.Contains(strings.ReplaceAll(string(m.Value), " ", ""), frag) {
			t.Errorf("%s answered as %s", id, m.Value)
		}
		if got := headerOf(m.Headers, consumers.HeaderTraceparent); got != parent {
			t.Errorf("%s: traceparent %q, want the request's", id, got)
		}
		rankings = append(rankings, ranking(resp))
	}
	for _, rk := range rankings[1:] {
		if rk != rankings[0] {
			t.Fatalf("rankings differ by form: %q", rankings)
		}
	}
	t.Logf("every form ranked %s", rankings[0])
}

// readResponse reads the next response of r, in whichever form it is.
func readResponse(ctx context.Context, t *testing.T, r *kafka.Reader) (kafka.Message, *schemas.ScoreResponse) {
	t.Helper()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("reading responses: %v", err)
	}
	codec, err := schemas.CodecFor(headerOf(m.Headers, schemas.HeaderContentType))
	resp := &schemas.ScoreResponse{}
	if err == nil {
		err = codec.DecodeScoreResponse(schemas.DefaultLimits(), m.Value, resp)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m, resp
}

// ranking is a response's items and means, for comparing rankings.
func ranking(resp *schemas.ScoreResponse) string {
	var items []string
	for _, it := range resp.GetItems() {
		items = append(items, fmt.Sprintf("%s:%.6f", it.GetItemId(), it.GetMean()))
	}
	return strings.Join(items, ",")
}

func headerOf(headers []kafka.Header, key string) string {
	for _, h := range headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
