package sampler

import (
	"errors"
	"fmt"
	"math"
)

// Shape parameters are clamped into [MinShape, MaxShape]: beyond them a
// Beta sample is 0 or 1 to double precision anyway, and the bounds keep
// every intermediate finite, so a sample is never NaN.
const (
	MinShape = 1e-6
	MaxShape = 1e15
)

// ErrInvalidShape is returned for an α or β that is NaN, infinite, zero or
// negative.
var ErrInvalidShape = errors.New("sampler: shape parameters must be finite and > 0")

// Arm is the Beta(α, β) posterior of one arm, with the constants of its two
// gamma samplers computed once, so a batch of draws pays no square root per
// candidate. An Arm is 64 bytes: one cache line.
type Arm struct {
	alpha, beta float64
	a, b        gammaConst
}

// gammaConst holds Marsaglia–Tsang's constants for Gamma(shape):
// d = shape − 1/3 and c = 1/√(9d); for shape < 1 they are those of
// Gamma(shape+1), and the draw is boosted by U^(1/shape) = exp(−E/shape).
type gammaConst struct {
	d, c float64
	// inv is 1/shape when boosting and 0 otherwise, so exp(−E·inv) is 1.
	inv float64
}

func newGammaConst(shape float64) gammaConst {
	if shape >= 1 {
		d := shape - 1.0/3
		return gammaConst{d: d, c: 1 / (3 * math.Sqrt(d))}
	}
	d := shape + 2.0/3
	return gammaConst{d: d, c: 1 / (3 * math.Sqrt(d)), inv: 1 / shape}
}

// NewArm returns the arm with posterior Beta(alpha, beta). Shapes outside
// [MinShape, MaxShape] are clamped; NaN, infinite, zero or negative shapes
// are an error.
func NewArm(alpha, beta float64) (Arm, error) {
	var a Arm
	err := a.Set(alpha, beta)
	return a, err
}

// Set makes a the arm with posterior Beta(alpha, beta); see NewArm. On
// error a is unchanged.
func (a *Arm) Set(alpha, beta float64) error {
	if !validShape(alpha) || !validShape(beta) {
		return fmt.Errorf("%w: Beta(%v, %v)", ErrInvalidShape, alpha, beta)
	}
	a.set(clampShape(alpha), clampShape(beta))
	return nil
}

func (a *Arm) set(alpha, beta float64) {
	a.alpha, a.beta = alpha, beta
	a.a = newGammaConst(alpha)
	a.b = newGammaConst(beta)
}

// Alpha returns α (after clamping).
func (a *Arm) Alpha() float64 { return a.alpha }

// Beta returns β (after clamping).
func (a *Arm) Beta() float64 { return a.beta }

// Mean returns the posterior mean α/(α+β).
func (a *Arm) Mean() float64 { return a.alpha / (a.alpha + a.beta) }

func validShape(x float64) bool { return x > 0 && !math.IsInf(x, 1) } // NaN fails x > 0

// clampShape bounds a shape into [MinShape, MaxShape]; NaN becomes MinShape.
func clampShape(x float64) float64 {
	if !(x >= MinShape) {
		return MinShape
	}
	if x > MaxShape {
		return MaxShape
	}
	return x
}

// Prior is the Beta prior of every arm. The default is Beta(1, 1).
type Prior struct {
	Alpha, Beta float64
}

// DefaultPrior is Beta(1, 1), uniform on [0, 1].
var DefaultPrior = Prior{Alpha: 1, Beta: 1}

// Validate reports a prior that is not a proper Beta distribution.
func (p Prior) Validate() error {
	if !validShape(p.Alpha) || !validShape(p.Beta) {
		return fmt.Errorf("%w: prior Beta(%v, %v)", ErrInvalidShape, p.Alpha, p.Beta)
	}
	return nil
}

// Arm returns the posterior after trials impressions that earned reward:
// α = α0 + reward, β = β0 + max(trials − reward, 0). Counts that are NaN or
// negative count as 0, and the shapes are clamped as in NewArm, so with a
// valid prior this never fails; counts come from the pipeline's own store.
func (p Prior) Arm(trials, reward float64) Arm {
	trials, reward = nonNegative(trials), nonNegative(reward)
	var a Arm
	a.set(clampShape(p.Alpha+reward), clampShape(p.Beta+math.Max(trials-reward, 0)))
	return a
}

func nonNegative(x float64) float64 {
	if x > 0 { // NaN fails
		return x
	}
	return 0
}
