package sampler

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// Arms whose true rates are drawn from a known Beta, each shown a few
// hundred times: the fitted prior's mean and strength recover the Beta's.
func TestPriorFitRecoversTheGroupsBeta(t *testing.T) {
	for _, tc := range []struct {
		name        string
		alpha, beta float64
	}{
		{"low rates", 2, 98},
		{"high rates", 9, 21},
		{"wide", 1.5, 3.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Rand
			r.Seed(3)
			truth, _ := NewArm(tc.alpha, tc.beta)
			rng := rand.New(rand.NewPCG(1, 2))
			const arms = 2000
			trials, rewards := make([]float64, arms), make([]float64, arms)
			for i := range arms {
				p := r.Beta(&truth)
				trials[i] = float64(200 + rng.IntN(400))
				for range int(trials[i]) {
					if rng.Float64() < p {
						rewards[i]++
					}
				}
			}
			f := DefaultPriorFit()
			f.MaxStrength = 1000
			got, used, err := f.Fit(trials, rewards)
			if err != nil || used != arms {
				t.Fatalf("fit: %v, %d arms used", err, used)
			}
			wantMean, wantStrength := tc.alpha/(tc.alpha+tc.beta), tc.alpha+tc.beta
			mean, strength := got.Alpha/(got.Alpha+got.Beta), got.Alpha+got.Beta
			if math.Abs(mean-wantMean) > 0.05*wantMean || math.Abs(strength-wantStrength) > 0.25*wantStrength {
				t.Fatalf("fitted Beta(%.3g, %.3g): mean %.4f strength %.1f, want mean %.4f strength %.1f",
					got.Alpha, got.Beta, mean, strength, wantMean, wantStrength)
			}
		})
	}
}

func TestPriorFitBounds(t *testing.T) {
	f := PriorFit{MinTrials: 10, MinArms: 3, MaxStrength: 50}
	for _, tc := range []struct {
		name            string
		trials, rewards []float64
		wantErr         error
		wantUsed        int
		wantStrength    float64
		wantMeanAtLeast float64
	}{
		{name: "too few arms with enough trials", trials: []float64{100, 100, 5, 9}, rewards: []float64{1, 2, 0, 0}, wantErr: ErrTooFewArms, wantUsed: 2},
		{name: "no spread beyond noise: the strongest prior", trials: []float64{1000, 1000, 1000, 1000}, rewards: []float64{100, 100, 100, 100},
			wantUsed: 4, wantStrength: 50},
		{name: "never rewarded: mean kept off zero", trials: []float64{100, 100, 100}, rewards: []float64{0, 0, 0},
			wantUsed: 3, wantStrength: 50, wantMeanAtLeast: 1.0 / 100},
		{name: "rates past 1 count as 1; spread at its widest: strength 1", trials: []float64{10, 10, 10, 10}, rewards: []float64{0, 30, 0, 10},
			wantUsed: 4, wantStrength: 1},
		{name: "NaN and infinite trials are left out", trials: []float64{math.NaN(), math.Inf(1), 50, 50, 50}, rewards: []float64{1, 1, 5, 5, 5},
			wantUsed: 3, wantStrength: 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, used, err := f.Fit(tc.trials, tc.rewards)
			if !errors.Is(err, tc.wantErr) || used != tc.wantUsed {
				t.Fatalf("got %v, %d arms, want %v, %d", err, used, tc.wantErr, tc.wantUsed)
			}
			if err != nil {
				return
			}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			if s := p.Alpha + p.Beta; math.Abs(s-tc.wantStrength) > 1e-9 {
				t.Fatalf("strength %v, want %v", s, tc.wantStrength)
			}
			if m := p.Alpha / (p.Alpha + p.Beta); m < tc.wantMeanAtLeast {
				t.Fatalf("mean %v, want at least %v", m, tc.wantMeanAtLeast)
			}
		})
	}
}

func TestPriorFitValidate(t *testing.T) {
	if err := DefaultPriorFit().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []PriorFit{{MinTrials: 0, MinArms: 5, MaxStrength: 10}, {MinTrials: 1, MinArms: 1, MaxStrength: 10},
		{MinTrials: 1, MinArms: 2, MaxStrength: math.Inf(1)}, {MinTrials: math.NaN(), MinArms: 2, MaxStrength: 10}} {
		if f.Validate() == nil {
			t.Errorf("%+v accepted", f)
		}
	}
}
