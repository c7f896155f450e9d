package sampler

import (
	"errors"
	"math"
	"time"
)

// Decay turns counts into exponentially decayed counts with a half-life,
// for catalogues whose click rates drift. Time is the events' own time
// (Unix milliseconds), never the wall clock, so the numbers depend on the
// events alone.
//
// The decayed value of a set of counts at time T is Σ amount·2^((t − T)/h)
// over its events at times t. A count is kept lazily as (value, as-of
// time), the as-of time being its latest event's: it is brought forward
// only when touched, so it never exceeds the plain count and never
// overflows. The sum does not depend on arrival order (beyond float
// rounding, about 1e-16 relative per addition). An event later than T
// weighs more than 1: the formula holds on both sides of T, which is what
// makes a posterior cached at one time exact at any other.
type Decay struct {
	// HalfLife is the time after which a count weighs half. Zero means no
	// decay.
	HalfLife time.Duration
}

// Decayed is a lazily decayed count: Value as of AtMs.
type Decayed struct {
	Value float64
	AtMs  int64
}

// Validate reports a negative half-life.
func (d Decay) Validate() error {
	if d.HalfLife < 0 {
		return errors.New("sampler: decay half-life must not be negative")
	}
	return nil
}

// On reports whether counts decay.
func (d Decay) On() bool { return d.HalfLife > 0 }

// HalfLifeMs is the half-life in milliseconds, as the stores carry it
// (0: none).
func (d Decay) HalfLifeMs() int64 { return d.HalfLife.Milliseconds() }

// Factor is 2^(−dtMs/halfLife), the weight after dtMs milliseconds (more
// than 1 for a negative dtMs); 1 without decay.
func (d Decay) Factor(dtMs int64) float64 {
	if d.HalfLife <= 0 || dtMs == 0 {
		return 1
	}
	return math.Exp2(-float64(dtMs) * float64(time.Millisecond) / float64(d.HalfLife))
}

// Add returns c plus amount observed at atMs, as of the later of the two
// times.
func (d Decay) Add(c Decayed, amount float64, atMs int64) Decayed {
	if c.AtMs == 0 && c.Value == 0 {
		return Decayed{Value: amount, AtMs: atMs}
	}
	if atMs >= c.AtMs {
		return Decayed{Value: c.Value*d.Factor(atMs-c.AtMs) + amount, AtMs: atMs}
	}
	return Decayed{Value: c.Value + amount*d.Factor(c.AtMs-atMs), AtMs: c.AtMs}
}

// At returns the value of c at atMs.
func (d Decay) At(c Decayed, atMs int64) float64 {
	return c.Value * d.Factor(atMs-c.AtMs)
}
