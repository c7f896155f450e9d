package consumers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
)

// Fault tests stop shared local services, so they run only when asked
// (BANDITSTREAM_FAULT_TESTS=1), one package at a time: make test runs them
// after the rest of the suite.
// Cassandra stops for 30 s while events flow, some of them from users who
// are not hot (their sessions need the cold tier) and while idle users are
// being offloaded: ingest pauses where it must, nothing is lost, and
// offloads resume once Cassandra is back.
func TestFaultColdTierOutage(t *testing.T) {
	stacktest.NeedFaults(t)
	e := newIngestEnv(t, 3)
	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	stacktest.StartProcess(t, bin, nil, append(e.args(e.group), "-idle-timeout", "1s", "-sweep-interval", "200ms")...)
	t.Cleanup(func() { stacktest.Stack(t, "start", "cassandra") })

	want, wantUsers := oracle{}, userOracle{}
	w := newWriter(e.brokers, e.topic)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	send := func(gen *eventGen, n int) { feed(ctx, t, w, gen, want, wantUsers, n) }
	before := newEventGen(4, 100, 50)
	send(before, 2000)
	stacktest.WaitForLag(t, e.brokers, e.group, e.topic, time.Minute)
	time.Sleep(2 * time.Second) // let users go idle: offloads will be due during the outage

	stacktest.Stack(t, "stop", "cassandra")
	down := time.Now()
	// Known users and users never seen (who need a session load) keep
	// sending while the cold tier is gone.
	during := newEventGen(5, 200, 50)
	for time.Since(down) < 30*time.Second {
		send(before, 200)
		send(during, 200)
		time.Sleep(2 * time.Second)
	}
	stacktest.Stack(t, "start", "cassandra")
	send(during, 1000)
	stacktest.WaitForLag(t, e.brokers, e.group, e.topic, 3*time.Minute)
	e.checkCounts(t, want)
	e.checkUsers(t, wantUsers)

	// Offloads work again: every user goes cold within a few sweeps.
	tier := e.tier(t)
	deadline := time.Now().Add(time.Minute)
	for u := range wantUsers {
		for {
			st, err := tier.ColdState(ctx, u)
			if err == nil && st.FlushedMs > down.UnixMilli() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("user %s not offloaded after the outage: %+v, %v", u, st, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// Redis is killed (no persistence: everything in it is gone) while events
// flow, and started again: ingest notices the loss, starts a new epoch and
// replays from the earliest offset, and the watermarks that survived (the
// users' in the cold tier) make the replay count only what was lost.
//
// With snapshots every second, the recovery restores the latest snapshot
// and replays from its offsets rather than from the earliest record.
func TestFaultHotTierLoss(t *testing.T) {
	stacktest.NeedFaults(t)
	e := newIngestEnv(t, 3)
	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	args := append(e.args(e.group), "-idle-timeout", "2s", "-sweep-interval", "300ms", "-snapshot-interval", "1s", "-log-level", "info")
	p1 := stacktest.StartProcess(t, bin, nil, args...)
	p2 := stacktest.StartProcess(t, bin, nil, args...)
	t.Cleanup(func() { stacktest.Stack(t, "start", "redis") })

	want, wantUsers := oracle{}, userOracle{}
	w := newWriter(e.brokers, e.topic)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	gen := newEventGen(6, 300, 200)
	send := func(n int) { feed(ctx, t, w, gen, want, wantUsers, n) }
	for i := 0; i < 10; i++ {
		send(2000)
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // some users offloaded, some hot
	send(2000)
	// Wait for a snapshot that covers the partitions.
	tier := e.tier(t)
	for deadline := time.Now().Add(time.Minute); ; {
		s, err := tier.LatestSnapshot(ctx)
		if err == nil && len(s.ReplayFrom) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot of the 3 partitions: %+v, %v", s, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stacktest.Stack(t, "kill", "redis")
	send(2000) // Kafka takes these while the hot tier is gone
	time.Sleep(2 * time.Second)
	stacktest.Stack(t, "start", "redis")
	for i := 0; i < 5; i++ {
		send(2000)
		time.Sleep(300 * time.Millisecond)
		if i == 1 {
			// A worker that starts after the other one may have recovered
			// must replay too.
			p2.Kill()
			p2.Start()
		}
	}
	stacktest.WaitForLag(t, e.brokers, e.group, e.topic, 4*time.Minute)
	e.checkCounts(t, want)
	e.checkUsers(t, wantUsers)
	logs := p1.Output() + p2.Output()
	if !strings.Contains(logs, "restored arm snapshot") {
		t.Fatal("the recovery did not restore a snapshot")
	}
	if strings.Contains(logs, `"replay_from":-1`) || strings.Contains(logs, `"replay_from":0,`) {
		t.Error("a partition replayed from the earliest record although a snapshot covered it")
	}
}
