package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/schemas/pb"
	"github.com/banditstream/banditstream/schemas/registry/registrytest"
	"github.com/banditstream/banditstream/store/state"
)

// The wire forms producers of other ecosystems write, sent by Python's
// confluent-kafka with its own serializers and registry client, without a
// content-type header: plain protobuf, framed protobuf (ProtobufSerializer),
// framed JSON (JSONSerializer), canonical JSON (MessageToJson) and the
// simple JSON form. Events in each are counted alike and requests ranked
// alike; with -schema-registry, a framed event whose schema id is another
// subject's is dead-lettered with the reason, and protobuf responses are
// framed with the id registered for the results topic, which confluent-kafka's
// ProtobufDeserializer reads.
func TestRegistryFramedFormsOnTheStack(t *testing.T) {
	python := stacktest.Python(t)
	srv := registrytest.New(t)
	e := newCLIEnv(t, "-schema-registry", srv.URL)
	dir := t.TempDir()
	descriptor := filepath.Join(dir, "banditstream.pb")
	fd, err := proto.Marshal(protodesc.ToFileDescriptorProto(pb.File_banditstream_v1_banditstream_proto))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(descriptor, fd, 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join("testdata", "serializers.py")
	produce := func(lines []string) {
		t.Helper()
		cmd := exec.Command(python, script, "produce", descriptor, strings.Join(e.brokers, ","), srv.URL)
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("serializers.py produce: %v\n%s", err, out)
		}
	}
	line := func(topic, key, form, typ string, m proto.Message, simple []byte) string {
		t.Helper()
		canonical, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(map[string]any{"topic": topic, "key": key, "form": form, "type": typ,
			"message": string(canonical), "simple": json.RawMessage(simple)})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	forms := []string{"protobuf", "framed-protobuf", "framed-json", "protojson", "json"}
	now := time.Now().Add(-time.Hour).UnixMilli()
	want := map[state.Arm]state.Counts{}
	var lines []string
	for f, form := range forms {
		for i, item := range []string{"r-a", "r-b"} {
			for j := range 10 * (i + 1) {
				ev := &schemas.Interaction{EventId: fmt.Sprintf("%s-%s-%d", form, item, j), UserId: fmt.Sprint("u", j%3), ItemId: item,
					Context: "registry", Type: schemas.Impression, EventTimeMs: now + int64(f*100+j)}
				if j < 8-3*i {
					ev.Type = schemas.Click
				}
				simple, err := schemas.JSON.AppendInteraction(nil, ev)
				if err != nil {
					t.Fatal(err)
				}
				lines = append(lines, line(e.events, ev.GetUserId(), form, "Interaction", ev, simple))
				a := state.Arm{Context: "registry", Item: item}
				c := want[a]
				c.ByType[state.TypeIndex(ev.GetType())]++
				want[a] = c
			}
		}
	}
	produce(lines)

	// A framed event whose schema id is registered for another topic.
	foreign := srv.Register("elsewhere-value", "PROTOBUF", `syntax = "proto3"; message Other { string id = 1; }`)
	ev := &schemas.Interaction{EventId: "foreign", UserId: "u0", ItemId: "r-a", Context: "registry", Type: schemas.Click, EventTimeMs: now}
	v, err := schemas.Protobuf.AppendInteraction(schemas.AppendFrame(nil, foreign, ev.ProtoReflect().Descriptor()), ev)
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Topic: e.events, Key: []byte("u0"), Value: v}); err != nil {
		t.Fatal(err)
	}
	e.checkCounts(t, want) // each form counted: five times each arm's events, the foreign one not
	dlq := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.events + ".dlq", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer dlq.Close()
	dead, err := dlq.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reason := fmt.Sprintf(`invalid schema id: schema %d is not a version of subject "%s-value" in the schema registry`, foreign, e.events)
	if got := headerOf(dead.Headers, "dlq-error"); got != reason || !bytes.Equal(dead.Value, v) {
		t.Errorf("dead letter %q with reason %q, want the foreign event with %q", dead.Value, got, reason)
	}
	for _, s := range srv.Schemas() {
		if _, ok := s.Subjects[e.events+"-value"]; ok && s.Type == "PROTOBUF" {
			t.Logf("ProtobufSerializer registered schema %d under %v", s.ID, s.Subjects)
		}
	}

	lines = nil
	for _, form := range forms {
		req := &schemas.ScoreRequest{RequestId: "reg-" + form, UserId: "probe", Context: "registry",
			Candidates: []string{"r-b", "r-a", "r-new"}, K: 3, Mode: schemas.ModeMean}
		simple, err := schemas.JSON.AppendScoreRequest(nil, req)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line(e.requests, req.GetUserId(), form, "ScoreRequest", req, simple))
	}
	produce(lines)

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.results, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var resultsID uint32 // registered by bandit-score with its first framed response
	rankings := map[string]string{}
	for len(rankings) < len(forms) {
		m, resp := readResponse(ctx, t, r)
		id := resp.GetRequestId()
		framed := len(m.Value) > 5 && m.Value[0] == schemas.MagicByte
		if protobuf := id == "reg-protobuf" || id == "reg-framed-protobuf"; framed != protobuf {
			t.Errorf("%s: framed %v (%q)", id, framed, m.Value)
		}
		if framed {
			if resultsID == 0 {
				for _, s := range srv.Schemas() {
					if _, ok := s.Subjects[e.results+"-value"]; ok {
						resultsID = s.ID
					}
				}
			}
			if got := binary.BigEndian.Uint32(m.Value[1:5]); got != resultsID || resultsID == 0 {
				t.Errorf("%s: framed with schema %d, want %d (registered for %s-value)", id, got, resultsID, e.results)
			}
		}
		rankings[id] = ranking(resp)
	}
	for id, rk := range rankings {
		if rk != rankings["reg-protobuf"] {
			t.Errorf("%s ranked %s, reg-protobuf %s", id, rk, rankings["reg-protobuf"])
		}
	}
	t.Logf("every form ranked %s", rankings["reg-protobuf"])

	// confluent-kafka's ProtobufDeserializer reads the framed responses.
	cmd := exec.Command(python, script, "consume", descriptor, strings.Join(e.brokers, ","), e.results, "2")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("serializers.py consume: %v\n%s", err, out)
	}
	read := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var resp schemas.ScoreResponse
		if err := protojson.Unmarshal([]byte(l), &resp); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if got := ranking(&resp); got != rankings[resp.GetRequestId()] {
			t.Errorf("ProtobufDeserializer read %s as %s, want %s", resp.GetRequestId(), got, rankings[resp.GetRequestId()])
		}
		read++
	}
	if read != 2 {
		t.Errorf("ProtobufDeserializer read %d responses, want 2:\n%s", read, out)
	}
}
