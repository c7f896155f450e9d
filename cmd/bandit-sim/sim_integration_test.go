package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/sampler/ope"
)

// A short simulation through the real pipeline (bandit-ingest and
// bandit-score processes on the local stack), a new item joining the
// catalogue after 20 s (a weak one: a strong newcomer would contest the
// first place late in so short a run) and compared with an earlier run:
// Thompson sampling's cumulative regret ends below half the uniform-random
// policy's, the best item's share of first places grows, sessions are
// offloaded and reloaded, every malformed event reaches the dead-letter
// topic, the new item is shown and its first slots counted, the picture is
// a PNG with the panel comparing the runs, and the scorer's decision log,
// evaluated offline, gives estimates that cover each policy's true value.
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
	decisions := stacktest.CreateTopic(t, brokers, run+"_decisions", 1)
	prefix, keyspace := run, stacktest.UniqueName("it")

	common := []string{"-kafka-brokers", brokers[0], "-redis-addr", redisAddr, "-cql-hosts", cql, "-cql-keyspace", keyspace, "-cql-migrate",
		"-key-prefix", prefix, "-session-timeout", "6s", "-log-level", "warn"}
	ingest := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	score := stacktest.BuildBinary(t, "./cmd/bandit-score")
	pi := stacktest.StartProcess(t, ingest, nil, append(common, "-mode", "all", "-topic", events, "-group", run+"_ingest",
		"-idle-timeout", "2s", "-sweep-interval", "500ms", "-fetch-max-wait", "50ms")...)
	ps := stacktest.StartProcess(t, score, nil, append(common, "-topic", requests, "-results-topic", results, "-group", run+"_score",
		"-cache-max-age", "200ms", "-fetch-max-wait", "20ms", "-decisions-topic", decisions, "-propensity-draws", "500")...)

	// An earlier run to compare with, as a run leaves it.
	earlier := t.TempDir()
	if err := (savedRun{Label: "x", Scenario: scenarioNewItems, Points: []savedPoint{{T: 1, Regret: 5}, {T: 2, Regret: 9}}}).save(earlier); err != nil {
		t.Fatal(err)
	}
	var o options
	fs := newFlags(&o)
	out := t.TempDir()
	simArgs := []string{
		"-kafka-brokers", brokers[0], "-redis-addr", redisAddr, "-key-prefix", prefix,
		"-requests-topic", requests, "-events-topic", events, "-reply-topic", "score-replies." + run,
		"-dlq-topics", events + ".dlq," + requests + ".dlq",
		"-duration", "35s", "-rate", "40", "-users", "40", "-session-requests", "6", "-idle", "4s",
		"-items", "20", "-contexts", "home", "-k", "3", "-bad-every", "100", "-seed", "5", "-out", out,
		"-scenario", "new-items", "-new-item-every", "20s", "-label", "this run", "-compare", "earlier=" + earlier,
		"-decisions-topic", decisions,
	}
	for _, p := range evaluated {
		simArgs = append(simArgs, "-policy", p)
	}
	err := config.Parse(fs, simArgs, func(string) (string, bool) { return "", false })
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

	// The new item joined, and the pipeline showed it: ranked by its
	// prior, it reaches the top k at once.
	saved, err := loadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Initial != 20 || saved.Items != 21 || last.newShown == 0 || len(saved.Points) != len(s) || saved.last().NewShown != last.newShown {
		t.Fatalf("items %d → %d, %d first slots of new items (saved %d); %d points saved of %d",
			saved.Initial, saved.Items, last.newShown, saved.last().NewShown, len(saved.Points), len(s))
	}
	if !strings.Contains(res.summary, "new items: ") || !strings.Contains(res.summary, "earlier ") || !strings.Contains(res.summary, "this run ") {
		t.Fatalf("summary without the scenario or the comparison:\n%s", res.summary)
	}

	checkOffPolicyEstimates(t, brokers, decisions, events, res.truths)
}

// The policies evaluated: the logged one and five others. Uniform puts
// first, often, items the logging policy (learning fast) almost never put
// first: its value is barely supported by the log, so its estimates may
// miss; the others stay near the logging policy.
var evaluated = []string{"logged", "mean", "uniform", "weak prior=-prior-alpha 1 -prior-beta 30",
	"mild prior=-prior-alpha 2 -prior-beta 20", "mean, weak prior=-mode mean -prior-alpha 1 -prior-beta 30"}

// checkOffPolicyEstimates runs bandit evaluate on the run's decision log
// and interactions (top-1 model, 99% intervals) and compares each policy's
// estimates with its true value on the same decisions, which bandit-sim
// computed from its hidden rates: the logged policy's IPS is its observed
// reward, and of the five other policies at least three have each
// estimator's interval covering their truth.
func checkOffPolicyEstimates(t *testing.T, brokers []string, decisions, events string, truths []truth) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "estimates.json")
	bandit := stacktest.BuildBinary(t, "./cmd/bandit")
	args := []string{"evaluate", "-kafka-brokers", brokers[0], "-decisions-topic", decisions, "-events-topic", events,
		"-window", "5s", "-draws", "300", "-level", "0.99", "-json", out, "-progress", "never"}
	for _, p := range evaluated {
		args = append(args, "-policy", p)
	}
	table, err := exec.Command(bandit, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("bandit evaluate: %v\n%s", err, table)
	}
	t.Logf("bandit evaluate:\n%s", table)
	var report struct {
		Decisions int            `json:"decisions"`
		Observed  float64        `json:"observed_reward"`
		Estimates []ope.Estimate `json:"estimates"`
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &report); err != nil || len(report.Estimates) != len(evaluated) || len(truths) != len(evaluated) {
		t.Fatalf("%s: %v, %d estimates, %d truths", b, err, len(report.Estimates), len(truths))
	}
	if truths[0].Decisions != report.Decisions || report.Decisions < 500 {
		t.Fatalf("%d decisions evaluated, %d with a truth", report.Decisions, truths[0].Decisions)
	}
	covered := 0
	for i, e := range report.Estimates {
		truth := truths[i].Value
		t.Logf("%-14s truth %.4f  IPS %.4f [%.4f, %.4f]  SNIPS %.4f [%.4f, %.4f]  DR %.4f [%.4f, %.4f]", e.Policy, truth,
			e.IPS.Value, e.IPS.Low, e.IPS.High, e.SNIPS.Value, e.SNIPS.Low, e.SNIPS.High, e.DR.Value, e.DR.Low, e.DR.High)
		if i == 0 {
			if e.IPS.Value != report.Observed || !e.IPS.Covers(report.Observed) {
				t.Errorf("the logged policy's IPS %v, observed %v", e.IPS, report.Observed)
			}
			continue
		}
		if e.IPS.Covers(truth) && e.SNIPS.Covers(truth) && e.DR.Covers(truth) {
			covered++
		}
	}
	if covered < 3 {
		t.Errorf("every estimator covers the truth for %d of 5 other policies, want at least 3", covered)
	}
}
