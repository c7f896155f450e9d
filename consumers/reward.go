package consumers

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/store/state"
)

// RewardModel turns counts into Beta posteriors: trials are impressions,
// reward r = Σ Weights[type]·count(type), α = α0 + r and
// β = β0 + max(trials − r, 0). While a user's session is hot, the user's
// own counts are added with weight Lambda: α += λ·r_u, β += λ·max(t_u − r_u, 0).
// With a half-life, the global counts and the user's own are the decayed
// ones at the time of the request (see sampler.Decay).
type RewardModel struct {
	Prior sampler.Prior
	// Weights by state.TypeIndex (impression, click, wishlist, add to
	// cart, order). The impression weight must be 0: impressions are the
	// trials.
	Weights [state.NumEventTypes]float64
	Lambda  float64
	// Decay decays the global counts by event time (zero: off). Ingest,
	// replay and the scorer of a namespace must use the same half-life.
	Decay sampler.Decay
}

// DefaultRewardModel is Beta(1, 1), a click worth 1 and everything else 0,
// and the user's own counts at weight 1.
func DefaultRewardModel() RewardModel {
	return RewardModel{Prior: sampler.DefaultPrior, Weights: [state.NumEventTypes]float64{0, 1, 0, 0, 0}, Lambda: 1}
}

// Validate reports a model that cannot work.
func (m RewardModel) Validate() error {
	if err := m.Prior.Validate(); err != nil {
		return err
	}
	if m.Weights[0] != 0 {
		return errors.New("reward model: impressions are the trials; their weight must be 0")
	}
	for _, w := range m.Weights {
		if !(w >= 0) || math.IsInf(w, 0) {
			return fmt.Errorf("reward model: weight %v must be finite and not negative", w)
		}
	}
	if !(m.Lambda >= 0) || math.IsInf(m.Lambda, 0) {
		return fmt.Errorf("reward model: lambda %v must be finite and not negative", m.Lambda)
	}
	return m.Decay.Validate()
}

// trialsReward returns the trials and reward of counts by type.
func (m *RewardModel) trialsReward(n *[state.NumEventTypes]float64) (float64, float64) {
	var r float64
	for t := 1; t < state.NumEventTypes; t++ {
		r += m.Weights[t] * n[t]
	}
	return n[0], r
}

// arm returns the global posterior of an arm with counts c at atMs (Unix
// ms; it matters with decay only).
func (m *RewardModel) arm(c *state.Counts, atMs int64) sampler.Arm {
	n := c.At(atMs, m.Decay)
	t, r := m.trialsReward(&n)
	return m.Prior.Arm(t, r)
}

// rescale brings a global posterior computed at one time to another, f
// being Decay.Factor of the time between: the decayed trials and reward
// all scale by f, and so do α − α0 and β − β0 (max(f·x, 0) = f·max(x, 0)),
// so the result is the posterior recomputed at the new time.
func (m *RewardModel) rescale(a *sampler.Arm, f float64) {
	if f == 1 {
		return
	}
	alpha := m.Prior.Alpha + f*(a.Alpha()-m.Prior.Alpha)
	beta := m.Prior.Beta + f*(a.Beta()-m.Prior.Beta)
	_ = a.Set(max(alpha, m.Prior.Alpha), max(beta, m.Prior.Beta)) // the prior's shapes are valid
}

// reprior gives global posteriors (the model's prior plus counts) the
// prior p instead: the counts' part, α − α0 and β − β0, is the same.
func (m *RewardModel) reprior(arms []sampler.Arm, p sampler.Prior) {
	if p == m.Prior {
		return
	}
	da, db := p.Alpha-m.Prior.Alpha, p.Beta-m.Prior.Beta
	for i := range arms {
		a := &arms[i]
		_ = a.Set(max(a.Alpha()+da, p.Alpha), max(a.Beta()+db, p.Beta)) // at least the prior's valid shapes
	}
}

// userPart returns what a user's own counts c add to α and β at atMs.
func (m *RewardModel) userPart(c *state.Counts, atMs int64) (float64, float64) {
	n := c.At(atMs, m.Decay)
	t, r := m.trialsReward(&n)
	return m.Lambda * r, m.Lambda * max(t-r, 0)
}

// personalize adds a user's own counts at atMs to a global posterior.
func (m *RewardModel) personalize(a *sampler.Arm, c *state.Counts, atMs int64) {
	ua, ub := m.userPart(c, atMs)
	_ = a.Set(a.Alpha()+ua, a.Beta()+ub) // finite and positive: sums of positive shapes and non-negative counts
}

// Posterior returns an arm's posterior at atMs (Unix ms) from its global
// counts and, if own is not nil, the user's own counts on it: what the
// scorer ranks.
func (m RewardModel) Posterior(global state.Counts, own *state.Counts, atMs int64) sampler.Arm {
	a := m.arm(&global, atMs)
	if own != nil && m.Lambda > 0 {
		m.personalize(&a, own, atMs)
	}
	return a
}

// Version names the model in every response.
func (m RewardModel) Version() string {
	w := ""
	for i, x := range m.Weights[1:] {
		if i > 0 {
			w += ","
		}
		w += strconv.FormatFloat(x, 'g', -1, 64)
	}
	v := fmt.Sprintf("beta(%g,%g);w=%s;lambda=%g", m.Prior.Alpha, m.Prior.Beta, w, m.Lambda)
	if m.Decay.On() {
		v += ";halflife=" + m.Decay.HalfLife.String()
	}
	return v
}
