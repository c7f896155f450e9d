package chaos_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

// result is one scenario's row of the table.
type result struct {
	scenario, faults string
	seconds          int
	// Events: acknowledged by Kafka (poison included), valid ones read
	// back from the topic, counted in the arm counts, lost (acknowledged
	// but missing from the topic, or in the topic but not counted),
	// counted more often than they are in the topic; users whose own
	// counts or history differ from the topic.
	sent, inTopic, counted, lost, twice, usersWrong int
	// Records in the events topic beyond the first of each event id: a
	// producer's retried send (kafka-go has no idempotent producer) that
	// Kafka had stored already. Counted as the topic holds them.
	producerDups int
	// Malformed records sent and found in the dead-letter topics.
	poison, deadLetters int
	// Requests acknowledged, answered at least once, answered more than
	// once (allowed: at-least-once, same request id), malformed ones sent
	// and dead-lettered.
	requests, answered, duplicates, badRequests, requestDeadLetters int
	crashes                                                         int
}

var (
	rowsMu sync.Mutex
	rows   []result
)

func TestMain(m *testing.M) {
	code := m.Run()
	rowsMu.Lock()
	table := formatTable(rows)
	rowsMu.Unlock()
	if table != "" {
		fmt.Print("\n" + table)
		if path := os.Getenv("BANDITSTREAM_CHAOS_REPORT"); path != "" {
			if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				code = 1
			}
		}
	}
	os.Exit(code)
}

func formatTable(rs []result) string {
	if len(rs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| scenario | faults | s | events sent | in topic (producer duplicates) | counted | lost | counted twice | users wrong | poison → DLQ | requests sent | answered | answered twice | bad requests → DLQ | crashes |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d (%d) | %d | %d | %d | %d | %d → %d | %d | %d | %d | %d → %d | %d |\n",
			r.scenario, r.faults, r.seconds, r.sent, r.inTopic, r.producerDups, r.counted, r.lost, r.twice, r.usersWrong, r.poison, r.deadLetters,
			r.requests, r.answered, r.duplicates, r.badRequests, r.requestDeadLetters, r.crashes)
	}
	return b.String()
}

// settle stops the load, lets the pipeline catch up, reads the truth back
// from the topics and compares the stores and the answers with it. The
// row is printed by make chaos; any loss or double count fails the test.
func (s *system) settle(scenario, faults string) result {
	t := s.t
	t.Helper()
	s.stopLoad()
	s.loadDone.Wait()
	stacktest.WaitForLag(t, s.brokers, s.ingestGroup, s.events, 5*time.Minute)
	stacktest.WaitForLag(t, s.brokers, s.scoreGroup, s.requests, 5*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	s.mu.Lock()
	r := result{scenario: scenario, faults: faults, sent: s.eventsSent, poison: s.poisonSent, requests: len(s.requestIDs),
		badRequests: s.badRequests}
	eventIDs := s.eventIDs
	s.mu.Unlock()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		s.mu.Lock()
		r.answered = 0
		for id := range s.requestIDs {
			if s.answers[id] > 0 {
				r.answered++
			}
		}
		r.duplicates = s.duplicates
		s.mu.Unlock()
		if r.answered == r.requests || time.Now().After(deadline) {
			break
		}
	}
	s.stopReader()
	<-s.readerDone
	redriven := s.redrive(ctx)

	// The truth: the distinct events the topic holds, each event id once
	// however many records carry it.
	arms := map[state.Arm]state.Counts{}
	truth := map[string]*stacktest.UserTruth{}
	inTopic := map[string]int{}
	poisonInTopic, misfiledInTopic := 0, 0
	err := readTopic(ctx, s.brokers, s.events, func(m kafka.Message) error {
		if isPoison(m.Key) {
			poisonInTopic++
			return nil
		}
		if header(m, misfiledHeader) != "" && header(m, "dlq-redriven-from") == "" {
			misfiledInTopic++ // dead-lettered; its re-driven copies count
			return nil
		}
		codec, err := schemas.CodecFor(header(m, schemas.HeaderContentType))
		if err != nil {
			return err
		}
		var ev schemas.Interaction
		if err := codec.DecodeInteraction(schemas.DefaultLimits(), m.Value, &ev); err != nil {
			return fmt.Errorf("event at %d/%d: %w", m.Partition, m.Offset, err)
		}
		r.inTopic++
		if inTopic[ev.EventId]++; inTopic[ev.EventId] > 1 {
			r.producerDups++
			return nil
		}
		stacktest.AddArmEvent(arms, &ev)
		stacktest.AddUserEvent(truth, &ev)
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s back: %v", s.events, err)
	}
	for id := range eventIDs {
		if inTopic[id] == 0 {
			r.lost++ // acknowledged by Kafka, not in the topic
		}
	}
	badInTopic := 0
	if err := readTopic(ctx, s.brokers, s.requests, func(m kafka.Message) error {
		if isPoison(m.Key) {
			badInTopic++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.deadLetters = countRecords(t, ctx, s.brokers, s.events+".dlq")
	r.requestDeadLetters = countRecords(t, ctx, s.brokers, s.requests+".dlq")

	hot, tier := s.stores(t)
	d, err := stacktest.CompareArms(ctx, hot, arms)
	if err != nil {
		t.Fatal(err)
	}
	r.counted, r.lost, r.twice = d.Counted, r.lost+d.Lost, d.Twice
	// bandit-ingest's -history-cap default.
	usersWrong, wrong, err := stacktest.CompareUsers(ctx, tier, hot, truth, 200)
	if err != nil {
		t.Fatal(err)
	}
	r.usersWrong = usersWrong
	for _, w := range append(d.Wrong, wrong...) {
		t.Error(w)
	}
	r.seconds = int(time.Since(s.start).Seconds())
	r.crashes = s.crashes()

	if misfiledInTopic > 0 {
		r.faults += fmt.Sprintf(": %d misfiled in the topic, %d records re-driven", misfiledInTopic, redriven)
	}
	rowsMu.Lock()
	rows = append(rows, r)
	rowsMu.Unlock()
	t.Logf("\n%s", formatTable([]result{r}))
	if r.lost != 0 || r.twice != 0 || r.usersWrong != 0 {
		t.Errorf("%d events lost, %d counted twice, %d users wrong", r.lost, r.twice, r.usersWrong)
	}
	if r.answered != r.requests {
		t.Errorf("%d of %d requests answered", r.answered, r.requests)
	}
	if r.deadLetters != poisonInTopic+misfiledInTopic || r.poison > poisonInTopic {
		t.Errorf("%d malformed events sent (%d in the topic), %d misfiled in the topic, %d dead letters", r.poison, poisonInTopic, misfiledInTopic, r.deadLetters)
	}
	if misfiledInTopic > 0 && redriven < 2*misfiledInTopic {
		t.Errorf("%d misfiled events in the topic, %d re-driven over two runs; want each twice", misfiledInTopic, redriven)
	}
	if r.requestDeadLetters != badInTopic || r.badRequests > badInTopic {
		t.Errorf("%d malformed requests sent (%d in the topic), %d dead letters", r.badRequests, badInTopic, r.requestDeadLetters)
	}
	if r.inTopic == 0 || (r.requests == 0 && r.badRequests == 0) {
		t.Errorf("nothing sent: the scenario tests nothing")
	}
	if r.sent > 0 && r.producerDups == 0 {
		t.Errorf("no event reached the topic twice: the scenario tests no producer duplicate")
	}
	return r
}

// redrive sends the misfiled events' dead letters back with the right
// content type, twice, by two redrives of their own progress each (the
// second sends them all again), and waits for ingest to consume them. It
// returns how many records the two runs re-drove.
func (s *system) redrive(ctx context.Context) int {
	t := s.t
	s.mu.Lock()
	misfiled := s.misfiled
	s.mu.Unlock()
	if misfiled == 0 {
		return 0
	}
	bin := stacktest.BuildBinary(t, "./cmd/bandit")
	total := 0
	for range 2 {
		cmd := exec.CommandContext(ctx, bin, "redrive", "-kafka-brokers", s.brokers[0], "-topic", s.events+".dlq",
			"-group", stacktest.UniqueName("chaos_redrive"), "-error-contains", "unknown content type", "-content-type", schemas.ContentTypeJSON)
		out, err := cmd.Output()
		if err != nil {
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				t.Fatalf("redrive: %v\n%s", err, exit.Stderr)
			}
			t.Fatalf("redrive: %v", err)
		}
		var n int
		if _, err := fmt.Sscanf(string(out), "re-drove %d", &n); err != nil {
			t.Fatalf("redrive printed %q", out)
		}
		total += n
	}
	stacktest.WaitForLag(t, s.brokers, s.ingestGroup, s.events, 5*time.Minute)
	return total
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// isPoison reports a record the load sent malformed: its key starts with
// poisonKey (a poison pill's key goes on after it).
func isPoison(key []byte) bool { return bytes.HasPrefix(key, []byte(poisonKey)) }

// stores opens the hot and tiered stores the processes write.
func (s *system) stores(t *testing.T) (*hot.Hot, *store.Tier) {
	rdb := stacktest.NewRedis(t, s.redis)
	hot, err := hot.New(rdb, hot.Keys{Prefix: s.prefix, Shards: 64})
	if err != nil {
		t.Fatal(err)
	}
	cold, _ := stacktest.OpenCold(t, s.keyspace, s.prefix, false)
	tier, err := store.NewTier(hot, cold, store.TierConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return hot, tier
}

// readTopic calls fn for every record of every partition of topic, up to
// the end offsets at the time of the call.
func readTopic(ctx context.Context, brokers []string, topic string, fn func(kafka.Message) error) error {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return fmt.Errorf("metadata of %s: %v", topic, md.Topics)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return err
	}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return po.Error
		}
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: po.Partition, MaxBytes: 16 << 20,
			MaxWait: 100 * time.Millisecond})
		if err := rd.SetOffset(po.FirstOffset); err != nil {
			rd.Close()
			return err
		}
		for {
			m, err := rd.ReadMessage(ctx)
			if err == nil {
				err = fn(m)
			}
			if err != nil {
				rd.Close()
				return err
			}
			if m.Offset >= po.LastOffset-1 {
				break
			}
		}
		rd.Close()
	}
	return nil
}

func countRecords(t *testing.T, ctx context.Context, brokers []string, topic string) int {
	n := 0
	if err := readTopic(ctx, brokers, topic, func(kafka.Message) error { n++; return nil }); err != nil {
		t.Fatalf("reading %s: %v", topic, err)
	}
	return n
}
