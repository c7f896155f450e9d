package ope

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/banditstream/banditstream/sampler"
)

// Decision is one logged decision: every candidate's posterior when it was
// made, the candidates shown (indexes, best first), the logging policy's
// propensity of each shown candidate at its slot, and the reward observed
// at each slot.
type Decision struct {
	Arms       []sampler.Arm
	Shown      []int
	Propensity []float64
	Reward     []float64
	// Prior is the prior the logged posteriors include: a policy with
	// another prior is evaluated on Arms with it swapped in.
	Prior sampler.Prior
	// Mode is how the logging policy ranked.
	Mode sampler.Mode
	// Seed makes the decision's Monte Carlo draws reproducible.
	Seed uint64
}

// check reports a decision the estimators cannot use.
func (d *Decision) check() error {
	if len(d.Propensity) != len(d.Shown) || len(d.Reward) != len(d.Shown) || len(d.Shown) == 0 {
		return fmt.Errorf("%d shown, %d propensities, %d rewards", len(d.Shown), len(d.Propensity), len(d.Reward))
	}
	for s, a := range d.Shown {
		if a < 0 || a >= len(d.Arms) {
			return fmt.Errorf("shown candidate %d of %d", a, len(d.Arms))
		}
		if p := d.Propensity[s]; !(p > 0 && p <= 1) {
			return fmt.Errorf("propensity %v at slot %d", p, s)
		}
	}
	return nil
}

// Kind is how a policy ranks.
type Kind uint8

// The policies' kinds.
const (
	// Logged is the logging policy itself: every importance weight is 1.
	Logged Kind = iota
	// Thompson ranks by one posterior draw per candidate.
	Thompson
	// Mean ranks by posterior mean.
	Mean
	// Uniform ranks uniformly at random.
	Uniform
)

// Policy is a ranking policy to evaluate.
type Policy struct {
	Name string
	Kind Kind
	// Prior, if set, replaces each decision's prior in the posteriors
	// (Thompson and Mean).
	Prior *sampler.Prior
}

// Config sets what a decision's value is and how it is estimated.
type Config struct {
	// Weights are the position weights of the slots counted: [1] values
	// the top slot alone; [1, 1, 1] the first three alike. Each decision's
	// value is Σ_s Weights[s]·reward[s].
	Weights []float64
	// Draws are the Monte Carlo rankings behind a Thompson policy's
	// probabilities; default 1000.
	Draws int
	// Bootstrap resamples behind each interval; default 200.
	Bootstrap int
	// Level of the intervals; default 0.95.
	Level float64
	// Seed of the bootstrap.
	Seed uint64
}

// Interval is an estimate with its bootstrap confidence interval.
type Interval struct {
	Value, Low, High float64
}

// Covers reports whether x lies within the interval.
func (i Interval) Covers(x float64) bool { return i.Low <= x && x <= i.High }

// Estimate is a policy's estimated value per decision by each estimator.
type Estimate struct {
	Policy    string
	Decisions int
	IPS       Interval
	SNIPS     Interval
	DR        Interval
	// DM is the direct method alone (the reward model's value of the
	// policy's rankings), the DR's first term.
	DM Interval
}

// ErrNoDecisions is returned for an empty log.
var ErrNoDecisions = errors.New("ope: no decisions")

// RewardModel is the expected reward of candidate a of decision d shown:
// the DR estimator's model (PosteriorMean), or, to compute a policy's true
// value in a simulation, the true rates.
type RewardModel func(d *Decision, a int) float64

// PosteriorMean is the reward model of the logged posteriors' means.
func PosteriorMean(d *Decision, a int) float64 { return d.Arms[a].Mean() }

// perDecision is what each decision contributes under one policy: per
// slot, the importance weight and the weighted reward; and the direct
// method's value.
type perDecision struct {
	w, wr, wq []float64 // by slot: weight, weight·reward, weight·q(shown)
	dm        float64
}

// Evaluate estimates each policy's value per decision on the log.
func Evaluate(cfg Config, log []Decision, policies []Policy) ([]Estimate, error) {
	if len(log) == 0 {
		return nil, ErrNoDecisions
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for i := range log {
		if err := log[i].check(); err != nil {
			return nil, fmt.Errorf("ope: decision %d: %w", i, err)
		}
	}
	out := make([]Estimate, 0, len(policies))
	for pi, p := range policies {
		per := make([]perDecision, len(log))
		var e evaluator
		for i := range log {
			per[i] = e.decision(&cfg, &log[i], p, PosteriorMean, uint64(pi), true)
		}
		out = append(out, cfg.estimate(p.Name, per))
	}
	return out, nil
}

// Value is the policy's expected value per decision on the log's decisions
// under the reward model q: with the true rates of a simulation, the truth
// the estimators estimate. It reads each decision's Arms, Shown (for the
// number of slots), Prior, Mode and Seed only.
func Value(cfg Config, log []Decision, p Policy, q RewardModel) float64 {
	cfg = cfg.withDefaults()
	var e evaluator
	var sum float64
	for i := range log {
		sum += e.decision(&cfg, &log[i], p, q, 0, false).dm
	}
	return sum / float64(len(log))
}

// Observed is the logged policy's observed value per decision.
func Observed(cfg Config, log []Decision) float64 {
	var sum float64
	for _, d := range log {
		for s, w := range cfg.Weights {
			if s < len(d.Reward) {
				sum += w * d.Reward[s]
			}
		}
	}
	return sum / float64(len(log))
}

// DefaultConfig returns the defaults: the top slot alone, 1,000 draws,
// 200 bootstrap resamples, 95% intervals.
func DefaultConfig() Config {
	return Config{Weights: []float64{1}, Draws: 1000, Bootstrap: 200, Level: 0.95}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.Weights) == 0 {
		c.Weights = d.Weights
	}
	if c.Draws == 0 {
		c.Draws = d.Draws
	}
	if c.Bootstrap == 0 {
		c.Bootstrap = d.Bootstrap
	}
	if c.Level == 0 {
		c.Level = d.Level
	}
	return c
}

func (c Config) validate() error {
	for _, w := range c.Weights {
		if !(w >= 0) || math.IsInf(w, 0) {
			return fmt.Errorf("ope: position weight %v must be finite and not negative", w)
		}
	}
	if c.Draws < 1 || c.Bootstrap < 10 || !(c.Level > 0 && c.Level < 1) {
		return fmt.Errorf("ope: draws %d ≥ 1, bootstrap %d ≥ 10 and a level in (0, 1), got %v", c.Draws, c.Bootstrap, c.Level)
	}
	return nil
}

// evaluator holds the buffers of one policy's pass over the log.
type evaluator struct {
	arms    []sampler.Arm
	scores  []float64
	ranked  []sampler.Ranked
	matches []float64
	rng     sampler.Rand
}

// decision computes one decision's contribution under p, with the reward
// model q for the direct method; the importance weights too if weighted
// (the decision then has its propensities and rewards).
func (e *evaluator) decision(cfg *Config, d *Decision, p Policy, q RewardModel, stream uint64, weighted bool) perDecision {
	slots := min(len(cfg.Weights), len(d.Shown))
	out := perDecision{w: make([]float64, slots), wr: make([]float64, slots), wq: make([]float64, slots)}
	n := len(d.Arms)
	k := min(len(d.Shown), n)
	arms := d.Arms
	if p.Prior != nil && (p.Kind == Thompson || p.Kind == Mean) {
		e.arms = append(e.arms[:0], d.Arms...)
		da, db := p.Prior.Alpha-d.Prior.Alpha, p.Prior.Beta-d.Prior.Beta
		for i := range e.arms {
			a := &e.arms[i]
			_ = a.Set(max(a.Alpha()+da, p.Prior.Alpha), max(a.Beta()+db, p.Prior.Beta))
		}
		arms = e.arms
	}
	// prob[s]: the policy's probability of the logged candidate at slot s.
	prob := e.matches[:0]
	for range slots {
		prob = append(prob, 0)
	}
	kind := p.Kind
	if kind == Logged {
		// Its weights are 1; its direct method ranks as it ranked.
		kind = Thompson
		if d.Mode == sampler.Mean {
			kind = Mean
		}
	}
	switch kind {
	case Thompson:
		if cap(e.scores) < n {
			e.scores = make([]float64, n)
		}
		scores := e.scores[:n]
		e.rng.Seed(d.Seed ^ (stream+1)*0x9e3779b97f4a7c15) // another stream than the logged ranking's
		hits := make([]float64, slots)
		var dm float64
		for range cfg.Draws {
			e.rng.Thompson(arms, scores)
			e.ranked = sampler.TopK(scores, k, e.ranked)
			for s := range slots {
				dm += cfg.Weights[s] * q(d, e.ranked[s].Index)
				if e.ranked[s].Index == d.Shown[s] {
					hits[s]++
				}
			}
		}
		out.dm = dm / float64(cfg.Draws)
		for s := range prob {
			prob[s] = hits[s] / float64(cfg.Draws)
		}
	case Mean:
		if cap(e.scores) < n {
			e.scores = make([]float64, n)
		}
		scores := e.scores[:n]
		sampler.Means(arms, scores)
		e.ranked = sampler.TopK(scores, k, e.ranked)
		for s := range slots {
			out.dm += cfg.Weights[s] * q(d, e.ranked[s].Index)
			if e.ranked[s].Index == d.Shown[s] {
				prob[s] = 1
			}
		}
	case Uniform:
		var mean float64
		for a := range n {
			mean += q(d, a)
		}
		mean /= float64(n)
		for s := range slots {
			out.dm += cfg.Weights[s] * mean
			prob[s] = 1 / float64(n)
		}
	}
	for s := 0; weighted && s < slots; s++ {
		w := 1.0
		if p.Kind != Logged {
			w = prob[s] / d.Propensity[s]
		}
		out.w[s] = w
		out.wr[s] = w * d.Reward[s]
		out.wq[s] = w * q(d, d.Shown[s])
	}
	e.matches = prob
	return out
}

// estimate turns the contributions into the estimators' values and their
// bootstrap intervals.
func (c Config) estimate(name string, per []perDecision) Estimate {
	values := func(idx []int) [4]float64 {
		var ips, dr, dm float64
		slots := len(c.Weights)
		sw, swr := make([]float64, slots), make([]float64, slots)
		for _, i := range idx {
			p := &per[i]
			dm += p.dm
			dr += p.dm
			for s := range p.w {
				ips += c.Weights[s] * p.wr[s]
				dr += c.Weights[s] * (p.wr[s] - p.wq[s])
				sw[s] += p.w[s]
				swr[s] += p.wr[s]
			}
		}
		var snips float64
		for s := range sw {
			if sw[s] > 0 {
				snips += c.Weights[s] * swr[s] / sw[s]
			}
		}
		n := float64(len(idx))
		return [4]float64{ips / n, snips, dr / n, dm / n}
	}
	all := make([]int, len(per))
	for i := range all {
		all[i] = i
	}
	point := values(all)
	var rng sampler.Rand
	rng.Seed(c.Seed ^ 0x5eed)
	boot := make([][]float64, 4)
	idx := make([]int, len(per))
	for range c.Bootstrap {
		for i := range idx {
			idx[i] = int(rng.Uint64() % uint64(len(per)))
		}
		v := values(idx)
		for j := range boot {
			boot[j] = append(boot[j], v[j])
		}
	}
	interval := func(j int) Interval {
		slices.Sort(boot[j])
		lo := boot[j][int(math.Floor((1-c.Level)/2*float64(len(boot[j]))))]
		hi := boot[j][min(len(boot[j])-1, int(math.Ceil((1+c.Level)/2*float64(len(boot[j]))))-1)]
		return Interval{Value: point[j], Low: min(lo, point[j]), High: max(hi, point[j])}
	}
	return Estimate{Policy: name, Decisions: len(per), IPS: interval(0), SNIPS: interval(1), DR: interval(2), DM: interval(3)}
}
