package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
)

// steady is the load of most scenarios: 2,000 events/s and 100
// requests/s (one tick every 50 ms).
var steady = load{events: 100, requests: 5}

// kill -9 storms: ingest and scorer processes, two of each, killed at
// random and restarted at once, each at least 10 times. The commit delay
// widens the window between a batch's effects and its commit, so kills
// land in it.
func TestFaultChaosKillStorm(t *testing.T) {
	s := newSystem(t, 6)
	slow := []string{"-fault-commit-delay", "100ms"}
	procs := map[string][]*supervised{
		"ingest": {s.startIngest(slow...), s.startIngest(slow...)},
		"score":  {s.startScorer(slow...), s.startScorer(slow...)},
	}
	s.run(steady)
	kills := sized(10, 25)
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 2*kills; i++ {
		time.Sleep(time.Duration(300+r.IntN(700)) * time.Millisecond)
		kind := []string{"ingest", "score"}[i%2]
		procs[kind][r.IntN(2)].kill(true)
	}
	time.Sleep(2 * time.Second)
	s.settle("kill -9 storm", fmt.Sprintf("%d kills of ingest, %d of the scorer", kills, kills))
}

// A rebalance storm: the number of ingest and scorer processes changes
// between 1 and 4 every few seconds (new ones start, others stop with
// SIGTERM), so both groups rebalance over and over under load.
func TestFaultChaosRebalanceStorm(t *testing.T) {
	s := newSystem(t, 6)
	var ingest, score []*supervised
	scale := func(ps []*supervised, n int, start func(...string) *supervised) []*supervised {
		for len(ps) < n {
			ps = append(ps, start())
		}
		for len(ps) > n {
			last := ps[len(ps)-1]
			if took, ok := last.term(); !ok {
				t.Errorf("SIGTERM: no exit within 30 s (%s)", took)
			}
			ps = ps[:len(ps)-1]
		}
		return ps
	}
	ingest = scale(ingest, 1, s.startIngest)
	score = scale(score, 1, s.startScorer)
	s.run(steady)
	steps := sized(8, 30)
	r := rand.New(rand.NewPCG(8, 8))
	for range steps {
		time.Sleep(time.Duration(2000+r.IntN(2000)) * time.Millisecond)
		ingest = scale(ingest, 1+r.IntN(4), s.startIngest)
		score = scale(score, 1+r.IntN(4), s.startScorer)
	}
	time.Sleep(2 * time.Second)
	s.settle("rebalance storm", fmt.Sprintf("%d scale steps, 1–4 processes of each", steps))
}

// Redis is killed (it keeps nothing: no persistence) and started again
// empty: ingest restores the latest arm snapshot from the cold tier and
// replays from its offsets; users come back from the cold tier.
func TestFaultChaosHotTierLoss(t *testing.T) {
	s := newSystem(t, 6)
	s.startIngest()
	s.startIngest()
	s.startScorer()
	s.run(steady)
	t.Cleanup(func() { stacktest.Stack(t, "start", "redis") })
	time.Sleep(time.Duration(sized(6, 15)) * time.Second)
	stacktest.Stack(t, "kill", "redis")
	time.Sleep(3 * time.Second)
	stacktest.Stack(t, "start", "redis")
	time.Sleep(time.Duration(sized(6, 15)) * time.Second)
	s.settle("Redis killed, restarted empty", "1 kill -9 of Redis, down 3 s")
}

// Cassandra stops while events and requests flow and idle users are due
// to be offloaded; it comes back after the outage.
func TestFaultChaosColdTierOutage(t *testing.T) {
	s := newSystem(t, 6)
	s.startIngest()
	s.startScorer()
	s.run(steady)
	t.Cleanup(func() { stacktest.Stack(t, "start", "cassandra") })
	time.Sleep(5 * time.Second)
	down := sized(10, 30)
	stacktest.Stack(t, "stop", "cassandra")
	time.Sleep(time.Duration(down) * time.Second)
	stacktest.Stack(t, "start", "cassandra")
	time.Sleep(5 * time.Second)
	s.settle("Cassandra stopped", fmt.Sprintf("cold tier down %d s", down))
}

// The Kafka broker is stopped and started again under load: producers
// retry, consumers reconnect and resume from their commits.
func TestFaultChaosBrokerRestart(t *testing.T) {
	s := newSystem(t, 6)
	s.startIngest()
	s.startIngest()
	s.startScorer()
	s.startScorer()
	s.run(steady)
	t.Cleanup(func() { stacktest.Stack(t, "start", "kafka") })
	time.Sleep(5 * time.Second)
	stopped := time.Now()
	stacktest.Stack(t, "stop", "kafka")
	stacktest.Stack(t, "start", "kafka")
	away := time.Since(stopped).Round(time.Second)
	time.Sleep(5 * time.Second)
	s.settle("Kafka broker restarted", fmt.Sprintf("broker away %s", away))
}

var sessionRead = regexp.MustCompile(`"msg":"offload: session read"[^}]*"user":"([^"]+)","version":([0-9]+)[,}]`)

// A sweeper is paused (SIGSTOP) after it has read a user's session for an
// offload and before it writes it to the cold tier; meanwhile the user
// comes back, and another sweeper offloads the newer state. The paused
// sweeper then resumes and writes its older copy: the newer state must
// survive.
func TestFaultChaosPausedSweeper(t *testing.T) {
	s := newSystem(t, 3)
	s.startIngest("-mode", "ingest")
	// The sweeper takes 2 s between reading a session and writing it, so
	// that the pause surely lands in between.
	stale := s.startIngest("-mode", "sweep", "-log-level", "debug", "-fault-cold-latency", "2s", "-snapshot-interval", "0")
	s.startScorer()
	s.run(load{events: 20, requests: 2})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var user string
	var version int64
	// The session being offloaded now (the last read), of a user with
	// events (version 0 is a session started by a request).
	for user == "" {
		if ms := sessionRead.FindAllStringSubmatch(stale.Output(), -1); len(ms) > 0 {
			m := ms[len(ms)-1]
			if v, _ := strconv.ParseInt(m[2], 10, 64); v > 0 {
				user, version = m[1], v
			}
		}
		if user == "" && ctx.Err() != nil {
			t.Fatal("the sweeper read no session of a user with events")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(stale.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Logf("sweeper paused after reading %s at version %d", user, version)

	// The user comes back (events flow for every user), and a second
	// sweeper offloads the newer state.
	fresh := s.startIngest("-mode", "sweep", "-snapshot-interval", "0")
	_, tier := s.stores(t)
	var newer int64
	for deadline := time.Now().Add(time.Minute); newer <= version; time.Sleep(100 * time.Millisecond) {
		if st, err := tier.ColdState(ctx, user); err == nil {
			newer = st.Version
		}
		if time.Now().After(deadline) {
			t.Fatalf("no newer offload of %s than version %d", user, version)
		}
	}
	fresh.term()
	if err := syscall.Kill(stale.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The resumed sweeper finishes its write of the older copy.
	written := regexp.MustCompile(`"msg":"offload: cold state written"[^}]*"user":"` + regexp.QuoteMeta(user) +
		`","version":` + strconv.FormatInt(version, 10) + `[,}]`)
	for !written.MatchString(stale.Output()) {
		if ctx.Err() != nil {
			t.Fatalf("the resumed sweeper did not finish its offload of %s", user)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, err := tier.ColdState(ctx, user); err != nil || st.Version < newer {
		t.Fatalf("cold state of %s after the stale write: version %d, %v; want at least %d", user, st.Version, err, newer)
	}
	s.settle("sweeper paused mid-offload", fmt.Sprintf("SIGSTOP after reading v%d, SIGCONT after v%d was offloaded", version, newer))
}

// 1% of the events and of the requests are malformed, of several kinds:
// each reaches its dead-letter topic once, and the valid ones are exact.
// One valid event in 150 is sent under an unknown content type: it is
// dead-lettered, then re-driven twice with the right one (the second
// redrive sends them all again), and counts once.
func TestFaultChaosPoison(t *testing.T) {
	s := newSystem(t, 6)
	s.startIngest()
	s.startScorer()
	l := steady
	l.poisonEvery = 100
	l.misfiledEvery = 150
	s.run(l)
	time.Sleep(time.Duration(sized(10, 30)) * time.Second)
	s.settle("1% poison input", "1 in 100 records malformed, 1 in 150 misfiled and re-driven twice")
}

// SIGTERM under load: ingest and scorer processes are stopped gracefully
// and started again over and over; each exits within 30 s, and nothing
// committed is redone.
func TestFaultChaosSigterm(t *testing.T) {
	s := newSystem(t, 6)
	procs := []*supervised{s.startIngest(), s.startIngest(), s.startScorer(), s.startScorer()}
	s.run(steady)
	stops := sized(8, 20)
	var slowest time.Duration
	r := rand.New(rand.NewPCG(9, 9))
	for range stops {
		time.Sleep(time.Duration(500+r.IntN(1500)) * time.Millisecond)
		p := procs[r.IntN(len(procs))]
		took, ok := p.term()
		if !ok {
			t.Errorf("%s: no exit within 30 s of SIGTERM", p.name)
		}
		slowest = max(slowest, took)
		p.start()
	}
	time.Sleep(2 * time.Second)
	s.settle("SIGTERM under load", fmt.Sprintf("%d SIGTERMs, slowest exit %s", stops, slowest.Round(time.Millisecond)))
}
