package sampler

import (
	"errors"
	"fmt"
	"math"
)

// PriorFit fits an empirical-Bayes prior to a group of arms (the arms of
// one context) by the method of moments on their observed rates: the
// prior's mean is the arms' mean rate, and its strength α0 + β0 is what
// makes a Beta's variance the spread of the rates less the part binomial
// noise explains. A new arm of the group then starts at the group's typical
// rate, and its own evidence outweighs the prior after about MaxStrength
// impressions at most.
type PriorFit struct {
	// MinTrials: only arms with at least this many trials take part (their
	// rates are not mostly noise). Default 20.
	MinTrials float64
	// MinArms: a group with fewer qualifying arms is not fitted. Default 5.
	MinArms int
	// MaxStrength bounds α0 + β0 from above (and is the strength when the
	// rates spread no more than noise does); the bound from below is 1.
	// Default 100.
	MaxStrength float64
}

// DefaultPriorFit returns the defaults: arms with 20 trials or more, 5
// arms at least, a strength of at most 100.
func DefaultPriorFit() PriorFit { return PriorFit{MinTrials: 20, MinArms: 5, MaxStrength: 100} }

// Validate reports bounds that cannot work.
func (f PriorFit) Validate() error {
	if !(f.MinTrials >= 1) || math.IsInf(f.MinTrials, 0) || f.MinArms < 2 || !(f.MaxStrength >= 1) || math.IsInf(f.MaxStrength, 0) {
		return fmt.Errorf("sampler: prior fit needs min trials ≥ 1, min arms ≥ 2 and a finite max strength ≥ 1, got %v, %d, %v",
			f.MinTrials, f.MinArms, f.MaxStrength)
	}
	return nil
}

// ErrTooFewArms is returned by Fit when too few arms qualify.
var ErrTooFewArms = errors.New("sampler: too few arms with enough trials to fit a prior")

// Fit returns the prior fitted to arms with trials[i] impressions and
// rewards[i] reward (a rate above 1 counts as 1), and the number of arms
// it used.
func (f PriorFit) Fit(trials, rewards []float64) (Prior, int, error) {
	var n int
	var sum, sumSq, sumInv float64
	for i, t := range trials {
		if !(t >= f.MinTrials) || math.IsInf(t, 0) {
			continue
		}
		p := min(nonNegative(rewards[i])/t, 1)
		n++
		sum += p
		sumSq += p * p
		sumInv += 1 / t
	}
	if n < f.MinArms || n < 2 {
		return Prior{}, n, ErrTooFewArms
	}
	k := float64(n)
	m := sum / k
	spread := max(sumSq-k*m*m, 0) / (k - 1)
	// The mean is kept off 0 and 1, so that both shapes stay positive and
	// a group that never clicked still learns from its first click.
	lo := 1 / (2 * f.MaxStrength)
	m = min(max(m, lo), 1-lo)
	// Binomial noise alone spreads the rates by m(1−m)·mean(1/n).
	v := spread - m*(1-m)*sumInv/k
	strength := f.MaxStrength
	if v > 0 {
		strength = min(max(m*(1-m)/v-1, 1), f.MaxStrength)
	}
	return Prior{Alpha: m * strength, Beta: (1 - m) * strength}, n, nil
}
