package consumers_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

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
		msgs := make([]kafka.Message, 0, 100)
		for i := 0; i < 100; i++ {
			ev := gen.next()
			want.add(ev)
			wantUsers.add(ev)
			msgs = append(msgs, encode(t, ev, i))
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
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
