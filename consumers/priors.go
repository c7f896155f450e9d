package consumers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/store/state"
)

// PriorSource gives the prior of a context's arms in place of the model's
// global one: ok is false where the global prior stands. The label names
// the prior used, for the response's model version.
type PriorSource interface {
	Prior(context string) (p sampler.Prior, label string, ok bool)
}

// PriorStore is what per-context priors need of the hot tier: every arm's
// counts, shard by shard, and the namespace's shared record of the latest
// fit, with a claim so that one process of a deployment fits at a time.
type PriorStore interface {
	Shards() int
	ShardCounts(ctx context.Context, shard int, fn func(state.Arm, state.Counts)) error
	Priors(ctx context.Context) (state.PriorFit, error)
	SetPriors(ctx context.Context, fit state.PriorFit) error
	ClaimPriorFit(ctx context.Context, every time.Duration) (bool, error)
}

// ContextPriorsConfig configures ContextPriors. Zero fields take the
// documented defaults.
type ContextPriorsConfig struct {
	// Model turns an arm's counts into trials and reward, decayed to the
	// time of the fit with a half-life. Default DefaultRewardModel().
	Model RewardModel
	// Fit bounds each context's fit; default sampler.DefaultPriorFit().
	Fit sampler.PriorFit
	// Every is how often the priors are fitted again (by one process of
	// the namespace: a fit reads every arm of the hot tier); they are read
	// back every Every/4. Default 5 min.
	Every time.Duration
	// MaxContexts bounds the contexts fitted: those with the most arms.
	// Default 10,000.
	MaxContexts int
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultContextPriorsConfig returns the defaults.
func DefaultContextPriorsConfig() ContextPriorsConfig {
	return ContextPriorsConfig{Model: DefaultRewardModel(), Fit: sampler.DefaultPriorFit(), Every: 5 * time.Minute, MaxContexts: 10_000}
}

// ContextPriors are empirical-Bayes priors per context: each context's
// prior is fitted to the rates of its arms (sampler.PriorFit), so a new
// item starts at its context's typical rate rather than at the global
// prior. The fit is shared through the hot tier: whichever process finds
// it older than Every fits it again from every arm's counts; the others
// read it. Prior is safe for concurrent use.
type ContextPriors struct {
	cfg   ContextPriorsConfig
	store PriorStore
	cur   atomic.Pointer[priorTable]
}

// priorTable is one fit as the scorer reads it.
type priorTable struct {
	fittedMs int64
	contexts map[string]contextPrior
}

type contextPrior struct {
	prior sampler.Prior
	label string
}

var _ PriorSource = (*ContextPriors)(nil)

// NewContextPriors returns per-context priors fitted from store's arms.
func NewContextPriors(cfg ContextPriorsConfig, store PriorStore) (*ContextPriors, error) {
	if cfg.Model == (RewardModel{}) {
		cfg.Model = DefaultRewardModel()
	}
	fillDefaults(&cfg, DefaultContextPriorsConfig())
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if store == nil {
		return nil, errors.New("context priors: nil store")
	}
	if err := cfg.Model.Validate(); err != nil {
		return nil, fmt.Errorf("context priors: %w", err)
	}
	if err := cfg.Fit.Validate(); err != nil {
		return nil, fmt.Errorf("context priors: %w", err)
	}
	if cfg.Every < time.Second || cfg.MaxContexts < 1 {
		return nil, fmt.Errorf("context priors: every %s must be at least 1s and max contexts %d at least 1", cfg.Every, cfg.MaxContexts)
	}
	p := &ContextPriors{cfg: cfg, store: store}
	p.cur.Store(&priorTable{})
	return p, nil
}

// Prior returns the context's fitted prior, if it has one.
func (p *ContextPriors) Prior(context string) (sampler.Prior, string, bool) {
	c, ok := p.cur.Load().contexts[context]
	if !ok {
		return p.cfg.Model.Prior, "global", false
	}
	return c.prior, c.label, true
}

// FittedMs is the time of the fit in use (Unix ms; 0: none yet).
func (p *ContextPriors) FittedMs() int64 { return p.cur.Load().fittedMs }

// Contexts is the number of contexts with a fitted prior in use.
func (p *ContextPriors) Contexts() int { return len(p.cur.Load().contexts) }

// Refresh reads the namespace's fit, fitting it again first if it is
// older than Every and this process is the one to. Run calls it
// periodically.
func (p *ContextPriors) Refresh(ctx context.Context) error {
	fit, err := p.store.Priors(ctx)
	if err != nil {
		return err
	}
	now := p.cfg.Now()
	if now.UnixMilli()-fit.FittedMs >= p.cfg.Every.Milliseconds() {
		claimed, err := p.store.ClaimPriorFit(ctx, p.cfg.Every)
		if err != nil {
			return err
		}
		if claimed {
			if fit, err = p.fit(ctx, now); err != nil {
				return err
			}
			if err := p.store.SetPriors(ctx, fit); err != nil {
				return err
			}
			p.cfg.Logger.Info("context priors fitted", "contexts", len(fit.Contexts))
		}
	}
	if fit.FittedMs != p.cur.Load().fittedMs {
		p.load(fit)
	}
	return nil
}

// Run refreshes the priors every Every/4 until ctx ends; a failure is
// logged and tried again at the next refresh, the priors in use staying.
func (p *ContextPriors) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Every / 4)
	defer t.Stop()
	for {
		if err := p.Refresh(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("refreshing context priors", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (p *ContextPriors) load(fit state.PriorFit) {
	t := &priorTable{fittedMs: fit.FittedMs, contexts: make(map[string]contextPrior, len(fit.Contexts))}
	for c, cp := range fit.Contexts {
		t.contexts[c] = contextPrior{prior: cp.Prior, label: fmt.Sprintf("context:beta(%.4g,%.4g)", cp.Prior.Alpha, cp.Prior.Beta)}
	}
	p.cur.Store(t)
}

// fit fits every context's prior to its arms' trials and reward at now.
func (p *ContextPriors) fit(ctx context.Context, now time.Time) (state.PriorFit, error) {
	type rates struct{ trials, rewards []float64 }
	byContext := map[string]*rates{}
	m := &p.cfg.Model
	atMs := now.UnixMilli()
	for shard := range p.store.Shards() {
		err := p.store.ShardCounts(ctx, shard, func(a state.Arm, c state.Counts) {
			n := c.At(atMs, m.Decay)
			t, r := m.trialsReward(&n)
			if t < p.cfg.Fit.MinTrials {
				return
			}
			rs := byContext[a.Context]
			if rs == nil {
				rs = &rates{}
				byContext[a.Context] = rs
			}
			rs.trials, rs.rewards = append(rs.trials, t), append(rs.rewards, r)
		})
		if err != nil {
			return state.PriorFit{}, fmt.Errorf("fitting context priors: %w", err)
		}
	}
	contexts := make([]string, 0, len(byContext))
	for c := range byContext {
		contexts = append(contexts, c)
	}
	// The contexts with the most arms, past the bound.
	slices.SortFunc(contexts, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(byContext[b].trials), len(byContext[a].trials)), cmp.Compare(a, b))
	})
	fit := state.PriorFit{FittedMs: atMs, Contexts: map[string]state.ContextPrior{}}
	for _, c := range contexts[:min(len(contexts), p.cfg.MaxContexts)] {
		rs := byContext[c]
		prior, n, err := p.cfg.Fit.Fit(rs.trials, rs.rewards)
		if err == nil {
			fit.Contexts[c] = state.ContextPrior{Prior: prior, Arms: n}
		}
	}
	return fit, nil
}
