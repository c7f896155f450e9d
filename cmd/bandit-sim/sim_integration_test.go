package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/deploy/local/stacktest"
)

// A short simulation through the real pipeline (bandit-ingest and
// bandit-score processes on the local stack), new items joining the
// catalogue every 10 s and compared with an earlier run: Thompson sampling's
// cumulative regret ends below half the uniform-random policy's, the best
// item's share of first places grows, sessions are offloaded and reloaded,
// every malformed event reaches the dead-letter topic, new items are shown
// and their first slots counted, and the picture is a PNG with the panel
// comparing the runs.
func TestSimulationLearnsThroughThePipeline(t *testing.T) {
	brokers := stacktest.KafkaBrokers(t)
	redisAddr := stacktest.RedisAddr(t)
	cql := stacktest.CQLHosts(t)[0]
	run := stacktest.UniqueName("it_sim")
	events := stacktest.CreateTopic(t, brokers, run+"_events", 3)
	requests := stacktest.CreateTopic(t, brokers, run+"_requests", 3)
	stacktest.CreateTopicNamed(t, brokers, events+".dlq", 1)
	stacktest.CreateTopicNamed(t, brokers, requests+".dlq", 1)
	results := stacktest.CreateTopic(t, brokers, run+"_results", 1)
	prefix, keyspace := run, stacktest.UniqueName("it")

	common := []string{"-kafka-brokers", brokers[0], "-redis-addr", redisAddr, "-cql-hosts", cql, "-cql-keyspace", keyspace, "-cql-migrate",
		"-key-prefix", prefix, "-session-timeout", "6s", "-log-level", "warn"}
	ingest := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	score := stacktest.BuildBinary(t, "./cmd/bandit-score")
	pi := stacktest.StartProcess(t, ingest, nil, append(common, "-mode", "all", "-topic", events, "-group", run+"_ingest",
		"-idle-timeout", "2s", "-sweep-interval", "500ms", "-fetch-max-wait", "50ms")...)
	ps := stacktest.StartProcess(t, score, nil, append(common, "-topic", requests, "-results-topic", results, "-group", run+"_score",
		"-cache-max-age", "200ms", "-fetch-max-wait", "20ms")...)

	// An earlier run to compare with, as a run leaves it.
	earlier := t.TempDir()
	if err := (savedRun{Label: "x", Scenario: scenarioNewItems, Points: []savedPoint{{T: 1, Regret: 5}, {T: 2, Regret: 9}}}).save(earlier); err != nil {
		t.Fatal(err)
	}
	var o options
	fs := newFlags(&o)
	out := t.TempDir()
	err := config.Parse(fs, []string{
		"-kafka-brokers", brokers[0], "-redis-addr", redisAddr, "-key-prefix", prefix,
		"-requests-topic", requests, "-events-topic", events, "-reply-topic", "score-replies." + run,
		"-dlq-topics", events + ".dlq," + requests + ".dlq",
		"-duration", "35s", "-rate", "40", "-users", "40", "-session-requests", "6", "-idle", "4s",
		"-items", "20", "-contexts", "home", "-k", "3", "-bad-every", "100", "-seed", "5", "-out", out,
		"-scenario", "new-items", "-new-item-every", "10s", "-label", "this run", "-compare", "earlier=" + earlier,
	}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var live bytes.Buffer
	res, err := simulate(ctx, &o, &live)
	if err != nil {
		t.Fatalf("simulation: %v\ningest: %s\nscore: %s", err, pi.Output(), ps.Output())
	}
	t.Log("\n" + res.summary)

	s := res.series
	last := s[len(s)-1]
	if last.regret >= last.uniformRegret/2 {
		t.Errorf("regret %.1f is not below half of uniform random's %.1f", last.regret, last.uniformRegret)
	}
	q := len(s) / 4
	first, final := bestShare(s, 0, q), bestShare(s, len(s)-q, len(s))
	if final <= first || final < 0.5 {
		t.Errorf("best item first in %.0f%% of rankings early and %.0f%% late: want growth to at least half", 100*first, 100*final)
	}
	if last.offloads == 0 || last.reloads == 0 {
		t.Errorf("%d offloads and %d reloads: sessions did not come and go", last.offloads, last.reloads)
	}
	// Every malformed event ends in the dead-letter topic (ingest may still
	// be on the last batch when the run ends).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		n, err := res.observer.deadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == last.badSent {
			break
		}
		if n > last.badSent || time.Now().After(deadline) {
			t.Fatalf("%d dead letters, %d malformed events sent", n, last.badSent)
		}
	}
	if last.badSent == 0 {
		t.Fatal("no malformed event sent: the dead-letter check tests nothing")
	}
	if !strings.Contains(live.String(), "regret") || !strings.Contains(live.String(), "\r") {
		t.Errorf("no status line: %q", live.String())
	}
	f, err := os.Open(res.png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil || cfg.Width < 600 || cfg.Height < 3*cfg.Width/2 {
		t.Fatalf("picture %s: %+v, %v; want three panels", res.png, cfg, err)
	}

	// New items joined, and the pipeline showed them: ranked by their
	// prior, they reach the top k at once.
	saved, err := loadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Initial != 20 || saved.Items < 23 || last.newShown == 0 || len(saved.Points) != len(s) || saved.last().NewShown != last.newShown {
		t.Fatalf("items %d → %d, %d first slots of new items (saved %d); %d points saved of %d",
			saved.Initial, saved.Items, last.newShown, saved.last().NewShown, len(saved.Points), len(s))
	}
	if !strings.Contains(res.summary, "new items: ") || !strings.Contains(res.summary, "earlier ") || !strings.Contains(res.summary, "this run ") {
		t.Fatalf("summary without the scenario or the comparison:\n%s", res.summary)
	}
}
