package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

type cliEnv struct {
	brokers                   []string
	redis, cql                string
	events, requests, results string
	prefix, keyspace          string
	ingestGroup               string
	ingestArgs                []string // bandit-ingest's flags
	scoreArgs                 []string // bandit-score's flags
	bin                       string
	rdb                       redis.UniversalClient
	hot                       *hot.Hot
}

// newCLIEnv starts bandit-ingest and bandit-score on fresh topics and a
// fresh namespace, both with the extra flags given.
func newCLIEnv(t *testing.T, extra ...string) *cliEnv {
	t.Helper()
	e := &cliEnv{brokers: stacktest.KafkaBrokers(t), redis: stacktest.RedisAddr(t), cql: stacktest.CQLHosts(t)[0]}
	redisAddr, cql := e.redis, e.cql
	e.events = stacktest.CreateTopic(t, e.brokers, "it_cli_events", 2)
	stacktest.CreateTopicNamed(t, e.brokers, e.events+".dlq", 1)
	e.requests = stacktest.CreateTopic(t, e.brokers, "it_cli_requests", 2)
	stacktest.CreateTopicNamed(t, e.brokers, e.requests+".dlq", 1)
	e.results = stacktest.CreateTopic(t, e.brokers, "it_cli_results", 1)
	e.prefix, e.keyspace = stacktest.UniqueName("it"), stacktest.UniqueName("it")
	prefix, keyspace := e.prefix, e.keyspace
	e.ingestGroup = stacktest.UniqueName("it_cli_ingest")
	rdb := stacktest.NewRedis(t, redisAddr)
	e.rdb = rdb
	var err error
	if e.hot, err = hot.New(rdb, hot.Keys{Prefix: prefix, Shards: 8}); err != nil {
		t.Fatal(err)
	}
	common := []string{"-kafka-brokers", e.brokers[0], "-redis-addr", redisAddr, "-cql-hosts", cql, "-cql-keyspace", keyspace, "-cql-migrate",
		"-key-prefix", prefix, "-shards", "8", "-session-timeout", "6s", "-fetch-max-wait", "50ms", "-log-level", "warn"}
	common = append(common, extra...)
	e.ingestArgs = append(slices.Clone(common), "-topic", e.events, "-group", e.ingestGroup)
	stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-ingest"), nil, e.ingestArgs...)
	e.scoreArgs = append(slices.Clone(common), "-topic", e.requests, "-results-topic", e.results,
		"-group", stacktest.UniqueName("it_cli_score"), "-cache-max-age", "100ms")
	stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-score"), nil, e.scoreArgs...)
	e.bin = stacktest.BuildBinary(t, "./cmd/bandit")
	return e
}

// bandit runs the CLI and returns its stdout, stderr and exit code.
func (e *cliEnv) bandit(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	if args[0] != "diff" && args[0] != "promote" { // those only talk to the hot tier
		args = append([]string{args[0], "-kafka-brokers", e.brokers[0]}, args[1:]...)
	}
	cmd := exec.Command(e.bin, args...)
	cmd.Env = append(os.Environ(), stacktest.CQLEnv()...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// ingest produces events to the events topic, keyed by user, and waits
// for bandit-ingest to catch up.
func (e *cliEnv) ingest(t *testing.T, evs []*schemas.Interaction) {
	t.Helper()
	msgs := make([]kafka.Message, len(evs))
	for i, ev := range evs {
		v, err := schemas.Protobuf.AppendInteraction(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = kafka.Message{Key: []byte(ev.GetUserId()), Value: v}
	}
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.events, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{},
		BatchTimeout: time.Millisecond, BatchSize: 5000}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("producing: %.300v", err)
	}
	stacktest.WaitForLag(t, e.brokers, e.ingestGroup, e.events, 3*time.Minute)
}

// clicked returns an impression of item in context c by user at atMs,
// with its click if clicked, ids made from item and n.
func clicked(user, c, item string, n int, atMs int64, click bool) []*schemas.Interaction {
	evs := []*schemas.Interaction{{EventId: fmt.Sprintf("%s-%d-i", item, n), UserId: user, ItemId: item, Context: c, Type: schemas.Impression, EventTimeMs: atMs}}
	if click {
		evs = append(evs, &schemas.Interaction{EventId: fmt.Sprintf("%s-%d-c", item, n), UserId: user, ItemId: item, Context: c, Type: schemas.Click, EventTimeMs: atMs})
	}
	return evs
}

// checkCounts waits for ingest to catch up and compares the arm counts.
func (e *cliEnv) checkCounts(t *testing.T, want map[state.Arm]state.Counts) {
	t.Helper()
	stacktest.WaitForLag(t, e.brokers, e.ingestGroup, e.events, time.Minute)
	var arms []state.Arm
	for a := range want {
		arms = append(arms, a)
	}
	got, err := e.hot.Counts(context.Background(), arms)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range arms {
		if got[i].ByType != want[a].ByType {
			t.Fatalf("arm %v: counts %v, want %v", a, got[i].ByType, want[a].ByType)
		}
	}
}

// JSON lines in, events counted; a request, a printed ranking; a topic
// tailed in readable form; dead letters re-driven after the fix, counted
// once although one was written three times, the first re-drive stopped
// between its publish and its commit, and a second redrive with no
// progress of its own sends them all again.
func TestCLIRoundTrip(t *testing.T) {
	e := newCLIEnv(t)
	want := map[state.Arm]state.Counts{}
	count := func(item string, typ schemas.EventType) {
		a := state.Arm{Context: "home", Item: item}
		c := want[a]
		c.ByType[state.TypeIndex(typ)]++
		want[a] = c
	}

	// produce: 50 good lines (half without event id or time), blank lines,
	// 3 lines of broken JSON and 2 invalid events.
	var lines []string
	now := time.Now().UnixMilli()
	for i := 0; i < 50; i++ {
		item := "sku-" + strconv.Itoa(i%3)
		typ := "impression"
		if i%4 == 0 {
			typ = "click"
		}
		if i%2 == 0 {
			lines = append(lines, fmt.Sprintf(`{"event_id":"p%d","user_id":"u%d","item_id":%q,"context":"home","type":%q,"event_time_ms":%d}`, i, i%5, item, typ, now))
		} else {
			lines = append(lines, fmt.Sprintf(`{"user_id":"u%d","item_id":%q,"context":"home","type":%q}`, i%5, item, typ))
		}
		parsed, _ := schemas.ParseEventType(typ)
		count(item, parsed)
		if i%10 == 0 {
			lines = append(lines, "", `{"user_id": "u1", "item_id": `, `{"user_id":"u1","item_id":"x","type":"purchase"}`)
		}
	}
	file := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.bandit(t, "", "produce", "-topic", e.events, "-file", file)
	if code != 1 || !strings.Contains(out, "published 50 events") || !strings.Contains(out, "10 lines rejected") ||
		!strings.Contains(errOut, "invalid type") {
		t.Fatalf("produce: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	e.checkCounts(t, want)

	// score: mean mode ranks by posterior mean, which the counts fix.
	out, errOut, code = e.bandit(t, "", "score", "-requests-topic", e.requests, "-user", "u1", "-context", "home",
		"-candidates", "sku-0,sku-1,sku-2,sku-new", "-k", "4", "-mode", "mean", "-timeout", "30s", "-explain")
	if code != 0 {
		t.Fatalf("score: exit %d\n%s\n%s", code, out, errOut)
	}
	var order []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] != "request" && f[0] != "scored" {
			order = append(order, f[1])
		}
	}
	// Means: sku-new 0.5 (prior); sku-0 has 5 clicks in 17 events, …
	if len(order) != 4 || order[0] != "sku-new" {
		t.Fatalf("score printed %q:\n%s", order, out)
	}
	// -explain: the unseen item's posterior is the prior; the others were
	// read for this request (the scorer had not cached them).
	if !regexp.MustCompile(`sku-new +score 0.5000  mean 0.5000  Beta\(1, 1\) from prior\n`).MatchString(out) ||
		strings.Count(out, " from hot") != 3 {
		t.Fatalf("score -explain printed:\n%s", out)
	}

	// tail: every event, decoded.
	out, _, code = e.bandit(t, "", "tail", "-topic", e.events, "-from", "beginning")
	if n := strings.Count(out, "\n"); code != 0 || n != 50 {
		t.Fatalf("tail: exit %d, %d lines, want 50", code, n)
	}
	var rec struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &rec); err != nil || !strings.Contains(string(rec.Value), `"context":"home"`) {
		t.Fatalf("tail line %q: %v", strings.SplitN(out, "\n", 2)[0], err)
	}

	// Dead letters: protobuf events sent with a JSON content-type header
	// are read as JSON and rejected.
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.events, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	var msgs []kafka.Message
	for i := 0; i < 20; i++ {
		ev := &schemas.Interaction{EventId: "d" + strconv.Itoa(i), UserId: "u9", ItemId: "sku-1", Context: "home", Type: schemas.Click, EventTimeMs: now}
		v, _ := schemas.Protobuf.AppendInteraction(nil, ev)
		msgs = append(msgs, kafka.Message{Key: []byte("u9"), Value: v,
			Headers: []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte(schemas.ContentTypeJSON)}}})
		count("sku-1", schemas.Click)
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	stacktest.WaitForLag(t, e.brokers, e.ingestGroup, e.events, time.Minute)
	out, _, _ = e.bandit(t, "", "tail", "-topic", e.events+".dlq", "-from", "beginning")
	if n := strings.Count(out, `"dlq-error":"invalid message: malformed JSON`); n != 20 {
		t.Fatalf("tail of the dead-letter topic shows %d JSON errors, want 20:\n%.2000s", n, out)
	}

	// The first dead letter written twice more (as ingest does when it
	// crashes between writing dead letters and committing): one origin,
	// three dead letters.
	dlqReader := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.events + ".dlq", Partition: 0})
	first, err := dlqReader.ReadMessage(context.Background())
	dlqReader.Close()
	if err != nil {
		t.Fatal(err)
	}
	dw := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.events + ".dlq", RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	again := kafka.Message{Key: first.Key, Value: first.Value, Headers: first.Headers}
	if err := dw.WriteMessages(context.Background(), again, again); err != nil {
		t.Fatal(err)
	}
	dw.Close()

	group := stacktest.UniqueName("it_redrive")
	redrive := []string{"redrive", "-topic", e.events + ".dlq", "-group", group, "-content-type", schemas.ContentTypeProtobuf}
	out, errOut, code = e.bandit(t, "", append(redrive, "-dry-run")...)
	if code != 0 || !strings.Contains(out, "would re-drive 20 dead letters") || !strings.Contains(out, "2 (origin re-driven before)") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	_, errOut, code = e.bandit(t, "", append(redrive, "-fault-stop-after-publish")...)
	if code != 3 {
		t.Fatalf("redrive with a stop after the publish: exit %d, want 3\n%s", code, errOut)
	}
	out, errOut, code = e.bandit(t, "", redrive...)
	if code != 0 || !strings.Contains(out, "re-drove 0 dead letters") || !strings.Contains(out, "22 (origin re-driven before)") {
		t.Fatalf("redrive after the stop: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = e.bandit(t, "", redrive...)
	if code != 0 || !strings.Contains(out, "re-drove 0 dead letters") || !strings.Contains(out, "0 (origin re-driven before)") {
		t.Fatalf("third redrive: exit %d\n%s", code, out)
	}
	e.checkCounts(t, want)
	// Re-driven a second time, by a redrive with no progress of its own:
	// the events reach the topic again and count once, by their ids.
	out, _, code = e.bandit(t, "", "redrive", "-topic", e.events+".dlq", "-group", stacktest.UniqueName("it_redrive_again"), "-content-type", schemas.ContentTypeProtobuf)
	if code != 0 || !strings.Contains(out, "re-drove 20 dead letters") {
		t.Fatalf("second redrive: exit %d\n%s", code, out)
	}
	e.checkCounts(t, want)

	// Every command answers -help.
	for _, c := range []string{"produce", "score", "tail", "redrive"} {
		if _, errOut, code := e.bandit(t, "", c, "-help"); code != 0 || !strings.Contains(errOut, "usage: bandit "+c) {
			t.Errorf("%s -help: exit %d\n%s", c, code, errOut)
		}
	}
}
