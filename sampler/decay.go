package sampler

import (
	"errors"
	"math"
	"time"
)

// Decay turns counts into exponentially decayed counts with a half-life,
// for catalogues whose click rates drift. Time is the events' own time
// (Unix milliseconds), never the wall clock, so replaying the same events
// in the same order gives the same numbers.
//
// A count is kept lazily as (value, as-of time): it is brought forward only
// when touched. An event older than the count's time is added already
// decayed, so the result does not depend on arrival order beyond float
// rounding.
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

// factor is 2^(−dt/halfLife) for dt ≥ 0 milliseconds.
func (d Decay) factor(dtMs int64) float64 {
	if d.HalfLife <= 0 || dtMs <= 0 {
		return 1
	}
	return math.Exp2(-float64(dtMs) * float64(time.Millisecond) / float64(d.HalfLife))
}

// Add returns c plus amount observed at atMs.
func (d Decay) Add(c Decayed, amount float64, atMs int64) Decayed {
	if c.AtMs == 0 && c.Value == 0 {
		return Decayed{Value: amount, AtMs: atMs}
	}
	if atMs >= c.AtMs {
		return Decayed{Value: c.Value*d.factor(atMs-c.AtMs) + amount, AtMs: atMs}
	}
	return Decayed{Value: c.Value + amount*d.factor(c.AtMs-atMs), AtMs: c.AtMs}
}

// At returns the value of c at atMs. A time before c's own is treated as
// c's time: counts are never inflated back in time.
func (d Decay) At(c Decayed, atMs int64) float64 {
	return c.Value * d.factor(atMs-c.AtMs)
}
