package consumers_test

import (
	"context"
	"testing"
	"time"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
)

// Users go idle between bursts of events and are offloaded while the next
// burst arrives, with the cold tier slowed down and two sweepers racing:
// every acknowledged event ends up in the users' state exactly once.
func TestIngestWithOffloadsUnderColdLatency(t *testing.T) {
	e := newIngestEnv(t, 3)
	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	fast := []string{"-idle-timeout", "300ms", "-sweep-interval", "100ms", "-fault-cold-latency", "200ms"}
	stacktest.StartProcess(t, bin, nil, append(e.args(e.group), append([]string{"-mode", "all"}, fast...)...)...)
	stacktest.StartProcess(t, bin, nil, append(e.args(e.group), append([]string{"-mode", "sweep"}, fast...)...)...)

	want, wantUsers := oracle{}, userOracle{}
	gen := newEventGen(3, 40, 30)
	w := newWriter(e.brokers, e.topic)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tier := e.tier(t)
	offloadsSeen := 0
	for burst := 0; burst < 16; burst++ {
		feed(ctx, t, w, gen, want, wantUsers, 100)
		time.Sleep(time.Duration(250+burst*15) * time.Millisecond)
		for u := range wantUsers {
			if _, err := tier.ColdState(ctx, u); err == nil {
				offloadsSeen++
			}
		}
	}
	stacktest.WaitForLag(t, e.brokers, e.group, e.topic, 3*time.Minute)
	if offloadsSeen == 0 {
		t.Fatal("no user was ever offloaded: the test did not race anything")
	}
	t.Logf("%d user-bursts found offloaded state in the cold tier", offloadsSeen)
	e.checkCounts(t, want)
	e.checkUsers(t, wantUsers)
}

// The hot tier's state vanishes between two batches, with no error for
// ingest to see (as when a server restarts without persistence while ingest
// is idle): the next batch finds a new epoch or none, ingest recovers and
// replays, and the counts are exact.
func TestIngestHotStateWipedBetweenBatches(t *testing.T) {
	e := newIngestEnv(t, 3)
	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	stacktest.StartProcess(t, bin, nil, e.args(e.group)...)
	want, wantUsers := oracle{}, userOracle{}
	w := newWriter(e.brokers, e.topic)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gen := newEventGen(7, 200, 100)
	send := func(n int) { feed(ctx, t, w, gen, want, wantUsers, n) }
	send(5000)
	stacktest.WaitForLag(t, e.brokers, e.group, e.topic, time.Minute)

	// Wipe this test's namespace.
	if n := stacktest.DeleteKeys(t, e.rdb, e.prefix+":*"); n == 0 {
		t.Fatalf("namespace %s has no keys to wipe", e.prefix)
	}

	send(5000)
	stacktest.WaitForLag(t, e.brokers, e.group, e.topic, 2*time.Minute)
	e.checkCounts(t, want)
	e.checkUsers(t, wantUsers)
}
