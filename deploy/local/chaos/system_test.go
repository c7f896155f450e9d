// Package chaos_test runs the whole pipeline — bandit-ingest and
// bandit-score processes on the real local stack — under faults, and
// checks that no event is lost or counted twice and that every score
// request is answered.
//
// Every scenario is a test (TestFaultChaos*): make test runs them at small
// sizes with the other fault tests; make chaos runs them at full size
// (BANDITSTREAM_CHAOS=full) and prints one table row per scenario.
package chaos_test

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
)

// EnvScale set to "full" runs the scenarios at the sizes of make chaos.
const EnvScale = "BANDITSTREAM_CHAOS"

// sized returns small in make test and full in make chaos.
func sized(small, full int) int {
	if os.Getenv(EnvScale) == "full" {
		return full
	}
	return small
}

const (
	users      = 2000
	items      = 300
	candidates = 40
	poisonKey  = "chaos-poison"
	// misfiledHeader marks a valid event sent under an unknown content
	// type: dead-lettered, then re-driven with the right one.
	misfiledHeader = "chaos-misfiled"
)

var contexts = []string{"home", "search", ""}

// system is one isolated pipeline on the local stack: its own topics,
// key prefix, keyspace and consumer groups, its processes, and the load
// sent through it.
type system struct {
	t                         *testing.T
	brokers                   []string
	redis, cql                string
	keyspace, prefix          string
	events, requests, results string
	ingestGroup, scoreGroup   string
	ingestBin, scoreBin       string
	start                     time.Time

	mu          sync.Mutex
	procs       []*supervised
	eventsSent  int // acknowledged by Kafka, poison included
	poisonSent  int
	requestIDs  map[string]bool // acknowledged requests (valid ones)
	badRequests int
	pillsSent   map[string]int // acknowledged bad requests of the poison pills, by kind (one oversize per round)
	answers     map[string]int // request id → responses read
	duplicates  int
	eventIDs    map[string]bool // acknowledged valid events
	misfiled    int             // valid events sent under an unknown content type

	stopLoad, stopReader context.CancelFunc
	loadDone             sync.WaitGroup
	readerDone           chan struct{}
}

func newSystem(t *testing.T, partitions int) *system {
	t.Helper()
	stacktest.NeedFaults(t)
	s := &system{t: t, brokers: stacktest.KafkaBrokers(t), redis: stacktest.RedisAddr(t), cql: stacktest.CQLHosts(t)[0],
		keyspace: stacktest.UniqueName("chaos"), prefix: stacktest.UniqueName("chaos"), start: time.Now(),
		requestIDs: map[string]bool{}, answers: map[string]int{}, eventIDs: map[string]bool{}, pillsSent: map[string]int{}}
	s.events = stacktest.CreateTopic(t, s.brokers, "chaos_events", partitions)
	s.requests = stacktest.CreateTopic(t, s.brokers, "chaos_requests", partitions)
	s.results = stacktest.CreateTopic(t, s.brokers, "chaos_results", 1)
	stacktest.CreateTopicNamed(t, s.brokers, s.events+".dlq", 1)
	stacktest.CreateTopicNamed(t, s.brokers, s.requests+".dlq", 1)
	s.ingestGroup, s.scoreGroup = stacktest.UniqueName("chaos_ingest"), stacktest.UniqueName("chaos_score")
	s.ingestBin = stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	s.scoreBin = stacktest.BuildBinary(t, "./cmd/bandit-score")
	return s
}

func (s *system) common() []string {
	return []string{"-kafka-brokers", strings.Join(s.brokers, ","), "-redis-addr", s.redis, "-cql-hosts", s.cql, "-cql-keyspace", s.keyspace, "-cql-migrate",
		"-key-prefix", s.prefix, "-shards", "64", "-session-timeout", "6s", "-log-level", "warn"}
}

// startIngest starts a bandit-ingest process (extra flags win).
func (s *system) startIngest(extra ...string) *supervised {
	args := append(s.common(), "-topic", s.events, "-group", s.ingestGroup, "-fetch-max-wait", "100ms",
		"-idle-timeout", "2s", "-sweep-interval", "300ms", "-snapshot-interval", "1s")
	return s.supervise("ingest", s.ingestBin, append(args, extra...))
}

// startScorer starts a bandit-score process (extra flags win).
func (s *system) startScorer(extra ...string) *supervised {
	args := append(s.common(), "-topic", s.requests, "-results-topic", s.results, "-group", s.scoreGroup,
		"-fetch-max-wait", "50ms", "-cache-max-age", "200ms")
	return s.supervise("score", s.scoreBin, append(args, extra...))
}

// supervised is a process restarted when it exits by itself, as a
// deployment's supervisor would; such exits are counted as crashes.
type supervised struct {
	proc    *stacktest.Process
	name    string
	mu      sync.Mutex
	stopped bool // stopped or killed on purpose: no restart
	crashes int
}

func (s *system) supervise(name, bin string, args []string) *supervised {
	p := &supervised{proc: stacktest.StartProcess(s.t, bin, nil, args...), name: name}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	done := make(chan struct{})
	// Runs before StartProcess's clean-up (clean-ups run last first): no
	// restart once the test ends.
	s.t.Cleanup(func() {
		p.mu.Lock()
		p.stopped = true
		p.mu.Unlock()
		close(done)
	})
	go p.watch(done)
	return p
}

func (p *supervised) watch(done <-chan struct{}) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		p.mu.Lock()
		if !p.stopped && p.proc.ExitCode() >= 0 {
			p.crashes++
			p.proc.Start()
		}
		p.mu.Unlock()
	}
}

// Kill sends SIGKILL; restart says whether to start it again at once.
func (p *supervised) kill(restart bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.proc.Kill()
	p.stopped = !restart
	if restart {
		p.proc.Start()
	}
}

// term sends SIGTERM and returns how long the exit took; the process
// stays stopped until start.
func (p *supervised) term() (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	return p.proc.Stop(30 * time.Second)
}

func (p *supervised) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = false
	p.proc.Start()
}

// Pid is the process id of the current run; Output all it has written.
func (p *supervised) Pid() int       { return p.proc.Pid() }
func (p *supervised) Output() string { return p.proc.Output() }

func (s *system) crashes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.procs {
		p.mu.Lock()
		n += p.crashes
		p.mu.Unlock()
	}
	return n
}

// load is what the generator sends every 50 ms tick.
type load struct {
	events, requests int
	poisonEvery      int // one record in poisonEvery is malformed (0: none)
	// misfiledEvery: one valid event in misfiledEvery is sent under an
	// unknown content type (0: none); settle re-drives them twice.
	misfiledEvery int
}

// run sends load until settle, and reads the responses. A batch that fails
// (a broker away) is sent again until it is acknowledged: it may then be
// in the topic twice, which is why settle reads the truth back from the
// topic.
func (s *system) run(l load) {
	ctx, cancel := context.WithCancel(context.Background())
	readCtx, stopReading := context.WithCancel(context.Background())
	s.stopLoad, s.stopReader = cancel, stopReading
	s.loadDone.Add(2)
	go func() { defer s.loadDone.Done(); s.sendEvents(ctx, l) }()
	go func() { defer s.loadDone.Done(); s.sendRequests(ctx, l) }()
	s.readerDone = make(chan struct{})
	go func() { defer close(s.readerDone); s.readAnswers(readCtx) }()
	s.t.Cleanup(func() {
		cancel()
		stopReading()
		s.loadDone.Wait()
		<-s.readerDone
	})
}

func newWriter(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{},
		BatchSize: 5000, BatchBytes: 8 << 20, BatchTimeout: 2 * time.Millisecond, WriteTimeout: 10 * time.Second, MaxAttempts: 3}
}

// publish writes msgs until Kafka acknowledges all of them or ctx ends.
func publish(ctx context.Context, w *kafka.Writer, msgs []kafka.Message) bool {
	for ctx.Err() == nil {
		if err := w.WriteMessages(context.WithoutCancel(ctx), msgs...); err == nil {
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	return false
}

var eventTypes = []schemas.EventType{schemas.Impression, schemas.Impression, schemas.Impression, schemas.Click, schemas.Wishlist, schemas.AddToCart, schemas.Order}

func (s *system) sendEvents(ctx context.Context, l load) {
	if l.events == 0 {
		return
	}
	w := newWriter(s.brokers, s.events)
	// One produce answer in 25 lost: the writer sends that batch again,
	// and the topic holds its events twice, as a real producer's retry
	// leaves them (kafka-go has no idempotent producer).
	w.Transport = stacktest.NewLostAcksEvery(25)
	defer w.Close()
	r := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for ctx.Err() == nil {
		msgs, ids, poison, misfiled := make([]kafka.Message, 0, l.events), make([]string, 0, l.events), 0, 0
		for range l.events {
			n++
			if l.poisonEvery > 0 && n%l.poisonEvery == 0 {
				msgs = append(msgs, poisonEvent(n))
				poison++
				continue
			}
			ev := &schemas.Interaction{EventId: "e" + strconv.Itoa(n), UserId: "u-" + strconv.Itoa(r.IntN(users)),
				ItemId: "sku-" + strconv.Itoa(r.IntN(items)), Context: contexts[r.IntN(len(contexts))],
				Type: eventTypes[r.IntN(len(eventTypes))], EventTimeMs: time.Now().UnixMilli()}
			codec := schemas.Protobuf
			if n%10 == 0 {
				codec = schemas.JSON
			}
			b, err := codec.AppendInteraction(nil, ev)
			if err != nil {
				panic(err)
			}
			ids = append(ids, ev.EventId)
			headers := []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte(codec.ContentType())}}
			if l.misfiledEvery > 0 && n%l.misfiledEvery == 1 {
				headers = []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte("text/json")}, {Key: misfiledHeader, Value: []byte("1")}}
				if codec != schemas.JSON {
					b, _ = schemas.JSON.AppendInteraction(nil, ev)
				}
				misfiled++
			}
			msgs = append(msgs, kafka.Message{Key: []byte(ev.UserId), Value: b, Headers: headers})
		}
		if !publish(ctx, w, msgs) {
			return
		}
		s.mu.Lock()
		s.eventsSent += len(msgs)
		s.poisonSent += poison
		s.misfiled += misfiled
		for _, id := range ids {
			s.eventIDs[id] = true
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// poisonEvent is a malformed record of one of four kinds.
func poisonEvent(n int) kafka.Message {
	var v []byte
	ct := schemas.Protobuf.ContentType()
	switch n % 4 {
	case 0:
		v = []byte{0xff, 0xff, 0xff, 0x01, 0x02}
	case 1:
		v, ct = []byte(`{"event_id": "x", "user_id": `), schemas.JSON.ContentType()
	case 2:
		v, _ = schemas.Protobuf.AppendInteraction(nil, &schemas.Interaction{EventId: "p" + strconv.Itoa(n), ItemId: "sku-1",
			Type: schemas.Click, EventTimeMs: time.Now().UnixMilli()}) // no user
	default:
		v, _ = schemas.Protobuf.AppendInteraction(nil, &schemas.Interaction{EventId: "p" + strconv.Itoa(n), UserId: "u-1",
			ItemId: "sku-1", Type: schemas.EventType(99), EventTimeMs: time.Now().UnixMilli()}) // unknown type
	}
	return kafka.Message{Key: []byte(poisonKey), Value: v, Headers: []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte(ct)}}}
}

func (s *system) sendRequests(ctx context.Context, l load) {
	if l.requests == 0 {
		return
	}
	w := newWriter(s.brokers, s.requests)
	defer w.Close()
	r := rand.New(rand.NewPCG(2, uint64(time.Now().UnixNano())))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for ctx.Err() == nil {
		msgs, ids, bad := make([]kafka.Message, 0, l.requests), make([]string, 0, l.requests), 0
		for range l.requests {
			n++
			if l.poisonEvery > 0 && n%l.poisonEvery == 0 {
				var v []byte
				if n%2 == 0 {
					v = []byte{0x0a, 0xff}
				} else {
					v, _ = schemas.Protobuf.AppendScoreRequest(nil, &schemas.ScoreRequest{RequestId: "bad" + strconv.Itoa(n), UserId: "u-1", K: 3})
				}
				msgs = append(msgs, kafka.Message{Key: []byte(poisonKey), Value: v})
				bad++
				continue
			}
			seed := r.Uint64()
			req := &schemas.ScoreRequest{RequestId: "r" + strconv.Itoa(n), UserId: "u-" + strconv.Itoa(r.IntN(users)),
				Context: contexts[r.IntN(len(contexts))], K: 5, Seed: &seed, SentTimeMs: time.Now().UnixMilli()}
			for range candidates {
				req.Candidates = append(req.Candidates, "sku-"+strconv.Itoa(r.IntN(items)))
			}
			v, err := schemas.Protobuf.AppendScoreRequest(nil, req)
			if err != nil {
				panic(err)
			}
			msgs = append(msgs, kafka.Message{Key: []byte(req.UserId), Value: v})
			ids = append(ids, req.RequestId)
		}
		if !publish(ctx, w, msgs) {
			return
		}
		s.mu.Lock()
		for _, id := range ids {
			s.requestIDs[id] = true
		}
		s.badRequests += bad
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

func (s *system) readAnswers(ctx context.Context) {
	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: s.brokers, Topic: s.results, Partition: 0, MaxWait: 100 * time.Millisecond,
		MaxBytes: 8 << 20, StartOffset: kafka.FirstOffset})
	defer rd.Close()
	for {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		var resp schemas.ScoreResponse
		if err := schemas.Protobuf.DecodeScoreResponse(schemas.DefaultLimits(), m.Value, &resp); err != nil {
			s.t.Errorf("undecodable response at offset %d: %v", m.Offset, err)
			continue
		}
		s.mu.Lock()
		s.answers[resp.RequestId]++
		if s.answers[resp.RequestId] > 1 {
			s.duplicates++
		}
		s.mu.Unlock()
	}
}
