package ope_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/sampler/ope"
)

// world is a synthetic catalogue with true click rates, logged by a
// Thompson-sampling bandit that learns as it goes: each decision ranks
// every item by its posterior then, shows the top k, logs the slot
// propensities, and observes a click on each shown item with its rate.
type world struct {
	rates []float64
}

func newWorld(r *rand.Rand, items int) world {
	w := world{rates: make([]float64, items)}
	for i := range w.rates {
		w.rates[i] = 0.02 + 0.3*r.Float64()
	}
	return w
}

func (w world) log(seed uint64, decisions, k, draws int) []ope.Decision {
	r := rand.New(rand.NewPCG(seed, seed+1))
	trials, clicks := make([]float64, len(w.rates)), make([]float64, len(w.rates))
	var rk sampler.Ranker
	out := make([]ope.Decision, 0, decisions)
	for i := range decisions {
		arms := make([]sampler.Arm, len(w.rates))
		for a := range arms {
			arms[a] = sampler.DefaultPrior.Arm(trials[a], clicks[a])
		}
		s := seed<<32 | uint64(i)
		ranked := rk.Rank(arms, k, sampler.Thompson, s, nil)
		slot, _ := rk.Propensities(arms, ranked, sampler.Thompson, draws, s, nil, nil)
		d := ope.Decision{Arms: arms, Prior: sampler.DefaultPrior, Seed: s, Mode: sampler.Thompson, Propensity: slot}
		for _, rr := range ranked {
			d.Shown = append(d.Shown, rr.Index)
			reward := 0.0
			if r.Float64() < w.rates[rr.Index] {
				reward = 1
			}
			d.Reward = append(d.Reward, reward)
			trials[rr.Index]++
			clicks[rr.Index] += reward
		}
		out = append(out, d)
	}
	return out
}

func (w world) truth(d *ope.Decision, a int) float64 { return w.rates[a] }

var policies = []ope.Policy{
	{Name: "logged", Kind: ope.Logged},
	{Name: "mean", Kind: ope.Mean},
	{Name: "uniform", Kind: ope.Uniform},
	{Name: "thompson, prior Beta(1, 10)", Kind: ope.Thompson, Prior: &sampler.Prior{Alpha: 1, Beta: 10}},
}

// Over 40 simulated logs (600 decisions each, top 1 of 8 items), each
// estimator's 95% interval covers each policy's true value on the logged
// decisions (its expected clicks by the true rates) in at least 32 of
// them (80%; the log is adaptive, its posteriors following its rewards,
// which iid resampling does not see); the logged policy's IPS is its
// observed reward exactly.
func TestEstimatesCoverTheTruth(t *testing.T) {
	const seeds = 40
	cfg := ope.Config{Weights: []float64{1}, Draws: 300, Bootstrap: 200}
	covered := map[string]int{}
	for seed := range uint64(seeds) {
		w := newWorld(rand.New(rand.NewPCG(seed, 99)), 8)
		log := w.log(seed, 600, 1, 1000)
		est, err := ope.Evaluate(ope.Config{Weights: cfg.Weights, Draws: cfg.Draws, Bootstrap: cfg.Bootstrap, Seed: seed}, log, policies)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range policies {
			truth := ope.Value(cfg, log, p, w.truth)
			e := est[i]
			for name, iv := range map[string]ope.Interval{"IPS": e.IPS, "SNIPS": e.SNIPS, "DR": e.DR} {
				if iv.Covers(truth) {
					covered[p.Name+" "+name]++
				} else {
					t.Logf("seed %d: %s %s %.4f [%.4f, %.4f] misses %.4f", seed, p.Name, name, iv.Value, iv.Low, iv.High, truth)
				}
			}
		}
		if obs := ope.Observed(cfg, log); est[0].IPS.Value != obs || !est[0].IPS.Covers(obs) {
			t.Fatalf("seed %d: the logged policy's IPS %v, observed %v", seed, est[0].IPS, obs)
		}
	}
	for _, p := range policies {
		for _, name := range []string{"IPS", "SNIPS", "DR"} {
			n := covered[p.Name+" "+name]
			t.Logf("%-28s %-5s covers the truth in %d of %d logs", p.Name, name, n, seeds)
			if n < seeds*8/10 {
				t.Errorf("%s %s covers the truth in %d of %d logs, want at least 80%%", p.Name, name, n, seeds)
			}
		}
	}
}

// Slates: the first two slots, the second weighing half.
func TestEstimatesOfSlates(t *testing.T) {
	cfg := ope.Config{Weights: []float64{1, 0.5}, Draws: 300, Bootstrap: 200, Seed: 4}
	w := newWorld(rand.New(rand.NewPCG(4, 99)), 8)
	log := w.log(4, 1500, 2, 300)
	est, err := ope.Evaluate(cfg, log, policies)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range policies {
		truth := ope.Value(cfg, log, p, w.truth)
		t.Logf("%-28s truth %.4f  IPS %.4f [%.4f, %.4f]  SNIPS %.4f  DR %.4f [%.4f, %.4f]", p.Name, truth,
			est[i].IPS.Value, est[i].IPS.Low, est[i].IPS.High, est[i].SNIPS.Value, est[i].DR.Value, est[i].DR.Low, est[i].DR.High)
		if !est[i].DR.Covers(truth) {
			t.Errorf("%s: DR %v misses the truth %.4f", p.Name, est[i].DR, truth)
		}
	}
}

func TestEvaluateRejects(t *testing.T) {
	arms := []sampler.Arm{sampler.DefaultPrior.Arm(0, 0), sampler.DefaultPrior.Arm(0, 0)}
	for _, tc := range []struct {
		name string
		log  []ope.Decision
		cfg  ope.Config
		want string
	}{
		{"empty", nil, ope.Config{}, "no decisions"},
		{"zero propensity", []ope.Decision{{Arms: arms, Shown: []int{0}, Propensity: []float64{0}, Reward: []float64{1}}}, ope.Config{}, "propensity 0"},
		{"shown out of range", []ope.Decision{{Arms: arms, Shown: []int{2}, Propensity: []float64{1}, Reward: []float64{1}}}, ope.Config{}, "shown candidate 2"},
		{"no reward", []ope.Decision{{Arms: arms, Shown: []int{0}, Propensity: []float64{1}}}, ope.Config{}, "0 rewards"},
		{"negative weight", []ope.Decision{{Arms: arms, Shown: []int{0}, Propensity: []float64{1}, Reward: []float64{1}}}, ope.Config{Weights: []float64{-1}}, "position weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ope.Evaluate(tc.cfg, tc.log, policies)
			if err == nil || !containsAll(err, tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.name == "empty" && !errors.Is(err, ope.ErrNoDecisions) {
				t.Fatalf("%v is not ErrNoDecisions", err)
			}
		})
	}
}

func containsAll(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }
