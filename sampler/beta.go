package sampler

import "math"

// gamma draws Gamma(d + 1/3) by Marsaglia and Tsang's method ("A simple
// method for generating gamma variables", 2000), for d ≥ 2/3, c = 1/√(9d).
//
// Each attempt takes one 64-bit draw u: the ziggurat normal's layer from
// bits 0–7 and value from bits 32–63, and the acceptance uniform's leading
// 24 bits from bits 8–31. fastGamma decides the common case from u alone;
// when it cannot, finishGamma completes that same attempt exactly, so the
// accepted values follow Gamma(d + 1/3) exactly.
func (r *Rand) gamma(d, c float64) float64 {
	u := r.Uint64()
	if g, ok := fastGamma(u, d, c); ok {
		return g
	}
	return r.finishGamma(u, d, c)
}

// fastGamma accepts an attempt when the ziggurat normal x falls in its
// layer's rectangle and the uniform lies wholly below a squeeze.
//
// With t = c·x the log acceptance ratio x²/2 + d(1 − v + ln v), v = (1+t)³,
// equals d·φ(t), φ(t) = 3 ln(1+t) − 3t + 1.5t² − t³ = −¾t⁴ + ⅗t⁵ − …, and
// φ(t) ≥ −1.5t⁴ for |t| ≤ ½; so u < 1 − 1.5·d·t⁴ accepts without a
// logarithm. It fails with probability about 1/(18d), against the ~10% of
// the original squeeze 1 − 0.0331x⁴. The 24-bit uniform decides it when its
// whole interval [k, k+1)·2⁻²⁴ lies below the squeeze.
func fastGamma(u uint64, d, c float64) (float64, bool) {
	i := u & 0xff
	x := float64(int32(u>>32)) * zigWn[i]
	t := c * x
	t2 := t * t
	if math.Abs(x) >= zigXn[i] || t2 > 0.25 || float64((u>>8)&(1<<24-1)+1)*0x1p-24 > 1-1.5*d*t2*t2 {
		return 0, false
	}
	w := 1 + t
	return d * w * w * w, true
}

// finishGamma completes the attempt begun with u, exactly, and draws new
// attempts until one is accepted.
func (r *Rand) finishGamma(u uint64, d, c float64) float64 {
	for {
		i := u & 0xff
		j := int32(u >> 32)
		var x float64
		if absInt32(j) < zigKn[i] {
			x = float64(j) * zigWn[i]
		} else {
			x = r.normSlow(i, j)
		}
		if t := c * x; t > -1 {
			v := (1 + t) * (1 + t) * (1 + t)
			var squeeze float64
			if t2 := t * t; t2 <= 0.25 {
				squeeze = 1 - 1.5*d*t2*t2
			} else {
				x2 := x * x
				squeeze = 1 - 0.0331*x2*x2
			}
			// The full-precision uniform: the attempt's 24 leading bits and
			// 53 more.
			uf := (float64((u>>8)&(1<<24-1)) + r.Float64()) * 0x1p-24
			if uf < squeeze || math.Log(uf) < 0.5*x*x+d*(1-v+math.Log(v)) {
				return d * v
			}
		}
		u = r.Uint64()
		if g, ok := fastGamma(u, d, c); ok {
			return g
		}
	}
}

// Gamma returns a Gamma(shape, 1) variate, for shape in [MinShape,
// MaxShape] (clamped like NewArm; NaN or non-positive shapes give 0).
func (r *Rand) Gamma(shape float64) float64 {
	if !validShape(shape) {
		return 0
	}
	g := newGammaConst(clampShape(shape))
	x := r.gamma(g.d, g.c)
	if g.inv != 0 {
		x *= math.Exp(-r.Exp() * g.inv)
	}
	return x
}

// Beta returns one draw from the arm's posterior, in [0, 1], never NaN.
//
// Beta = X/(X+Y) with X ~ Gamma(α), Y ~ Gamma(β). A shape s < 1 is drawn as
// Gamma(s+1)·exp(−E/s); writing X = x·e^(−p), Y = y·e^(−q) the ratio is
// 1/(1 + (y/x)·e^(p−q)): one exponential however many shapes are small, and
// none when both are ≥ 1.
func (r *Rand) Beta(a *Arm) float64 {
	ux, uy := r.Uint64(), r.Uint64()
	if b, ok := fastBeta(ux, uy, a); ok {
		return b
	}
	return r.finishBeta(ux, uy, a)
}

// fastBeta decides both gammas' first attempts from ux and uy when it can,
// for arms whose shapes are both ≥ 1: the common case, with no call and no
// logarithm. The two attempts' arithmetic is independent and overlaps.
func fastBeta(ux, uy uint64, a *Arm) (float64, bool) {
	if a.a.inv != 0 || a.b.inv != 0 {
		return 0, false
	}
	ix, iy := ux&0xff, uy&0xff
	x := float64(int32(ux>>32)) * zigWn[ix]
	y := float64(int32(uy>>32)) * zigWn[iy]
	tx, ty := a.a.c*x, a.b.c*y
	tx2, ty2 := tx*tx, ty*ty
	if math.Abs(x) >= zigXn[ix] || math.Abs(y) >= zigXn[iy] || tx2 > 0.25 || ty2 > 0.25 ||
		float64((ux>>8)&(1<<24-1)+1)*0x1p-24 > 1-1.5*a.a.d*tx2*tx2 ||
		float64((uy>>8)&(1<<24-1)+1)*0x1p-24 > 1-1.5*a.b.d*ty2*ty2 {
		return 0, false
	}
	wx, wy := 1+tx, 1+ty
	gx, gy := a.a.d*wx*wx*wx, a.b.d*wy*wy*wy
	return gx / (gx + gy), true
}

// finishBeta completes a draw whose first attempts fastBeta could not
// decide.
func (r *Rand) finishBeta(ux, uy uint64, a *Arm) float64 {
	x, okx := fastGamma(ux, a.a.d, a.a.c)
	y, oky := fastGamma(uy, a.b.d, a.b.c)
	if !okx {
		x = r.finishGamma(ux, a.a.d, a.a.c)
	}
	if !oky {
		y = r.finishGamma(uy, a.b.d, a.b.c)
	}
	if a.a.inv == 0 && a.b.inv == 0 {
		return x / (x + y)
	}
	var s float64
	if a.a.inv != 0 {
		s = r.Exp() * a.a.inv
	}
	if a.b.inv != 0 {
		s -= r.Exp() * a.b.inv
	}
	return 1 / (1 + (y/x)*math.Exp(s))
}

// Thompson fills out[i] with one posterior draw of arms[i]. out must be at
// least as long as arms.
func (r *Rand) Thompson(arms []Arm, out []float64) {
	out = out[:len(arms)]
	for i := range arms {
		ux, uy := r.Uint64(), r.Uint64()
		if b, ok := fastBeta(ux, uy, &arms[i]); ok {
			out[i] = b
		} else {
			out[i] = r.finishBeta(ux, uy, &arms[i])
		}
	}
}

// Means fills out[i] with the posterior mean of arms[i]. out must be at
// least as long as arms.
func Means(arms []Arm, out []float64) {
	out = out[:len(arms)]
	for i := range arms {
		out[i] = arms[i].Mean()
	}
}
