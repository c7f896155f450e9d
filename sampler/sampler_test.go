package sampler

import (
	"errors"
	"math"
	"slices"
	"sort"
	"testing"
	"time"
)

// Over shapes from 1e-3 to 1e7, log-uniform, every draw is in [0, 1] and
// never NaN; so are the clamped extremes.
func TestBetaRangeProperty(t *testing.T) {
	r := NewRand(3)
	pick := NewRand(4)
	logShape := func() float64 { return math.Pow(10, -3+10*pick.Float64()) }
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	for i := 0; i < n; i++ {
		a, b := logShape(), logShape()
		arm, err := NewArm(a, b)
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 5; j++ {
			if x := r.Beta(&arm); !(x >= 0 && x <= 1) {
				t.Fatalf("Beta(%g, %g) drew %v", a, b, x)
			}
		}
	}
	extremes := []float64{math.SmallestNonzeroFloat64, 1e-300, 1e-9, MinShape, 1, MaxShape, 1e300, math.MaxFloat64}
	for _, a := range extremes {
		for _, b := range extremes {
			arm, err := NewArm(a, b)
			if err != nil {
				t.Fatalf("NewArm(%g, %g): %v", a, b, err)
			}
			for j := 0; j < 1000; j++ {
				if x := r.Beta(&arm); !(x >= 0 && x <= 1) {
					t.Fatalf("Beta(%g, %g) drew %v", a, b, x)
				}
			}
			if m := arm.Mean(); !(m >= 0 && m <= 1) {
				t.Fatalf("mean of Beta(%g, %g) = %v", a, b, m)
			}
		}
	}
}

func TestNewArmRejectsInvalidShapes(t *testing.T) {
	bad := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, -1}
	for _, v := range bad {
		if _, err := NewArm(v, 1); !errors.Is(err, ErrInvalidShape) {
			t.Errorf("NewArm(%v, 1): err = %v", v, err)
		}
		if _, err := NewArm(1, v); !errors.Is(err, ErrInvalidShape) {
			t.Errorf("NewArm(1, %v): err = %v", v, err)
		}
		if err := (Prior{Alpha: v, Beta: 1}).Validate(); err == nil {
			t.Errorf("prior with α = %v accepted", v)
		}
	}
	arm, _ := NewArm(2, 3)
	if err := arm.Set(math.NaN(), 1); err == nil || arm.Alpha() != 2 || arm.Beta() != 3 {
		t.Errorf("failed Set changed the arm: %v %v %v", err, arm.Alpha(), arm.Beta())
	}
}

func TestPriorArm(t *testing.T) {
	p := Prior{Alpha: 1, Beta: 2}
	tests := []struct {
		name                string
		trials, reward      float64
		wantAlpha, wantBeta float64
	}{
		{"no data", 0, 0, 1, 2},
		{"clicks and impressions", 100, 7, 8, 95},
		{"more reward than trials", 3, 5, 6, 2},
		{"negative counts count as zero", -4, -1, 1, 2},
		{"NaN counts count as zero", math.NaN(), math.NaN(), 1, 2},
		{"huge counts are clamped", 1e300, 0, 1, MaxShape},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			arm := p.Arm(tc.trials, tc.reward)
			if arm.Alpha() != tc.wantAlpha || arm.Beta() != tc.wantBeta {
				t.Fatalf("Arm(%v, %v) = Beta(%v, %v), want Beta(%v, %v)", tc.trials, tc.reward, arm.Alpha(), arm.Beta(), tc.wantAlpha, tc.wantBeta)
			}
		})
	}
}

func testArms(n int, seed uint64) []Arm {
	r := NewRand(seed)
	arms := make([]Arm, n)
	for i := range arms {
		arms[i] = DefaultPrior.Arm(float64(r.Uint64()%10_000), float64(r.Uint64()%300))
	}
	return arms
}

func TestSeedDeterminism(t *testing.T) {
	arms := testArms(400, 1)
	var a, b Ranker
	r1 := a.Rank(arms, 20, Thompson, 99, nil)
	r2 := b.Rank(arms, 20, Thompson, 99, nil)
	if !slices.Equal(r1, r2) {
		t.Fatalf("same seed, different rankings:\n%v\n%v", r1, r2)
	}
	// The same ranker again, after other work, still reproduces it.
	a.Rank(arms, 5, Thompson, 1234, nil)
	if r3 := a.Rank(arms, 20, Thompson, 99, nil); !slices.Equal(r1, r3) {
		t.Fatalf("reused ranker does not reproduce the ranking")
	}
	r4 := a.Rank(arms, 20, Thompson, 100, nil)
	if slices.Equal(r1, r4) {
		t.Fatal("different seeds gave the same ranking")
	}
	s1, s2 := make([]float64, 400), make([]float64, 400)
	NewRand(5).Thompson(arms, s1)
	NewRand(6).Thompson(arms, s2)
	same := 0
	for i := range s1 {
		if s1[i] == s2[i] {
			same++
		}
	}
	if same > 0 {
		t.Fatalf("different seeds drew %d equal scores of 400", same)
	}
}

func TestMeanMode(t *testing.T) {
	arms := []Arm{
		DefaultPrior.Arm(100, 10), // 11/102
		DefaultPrior.Arm(0, 0),    // 0.5
		DefaultPrior.Arm(10, 9),   // 10/12
		DefaultPrior.Arm(0, 0),    // 0.5, ties with index 1
	}
	var rk Ranker
	got := rk.Rank(arms, 10, Mean, 0, nil)
	want := []int{2, 1, 3, 0}
	for i, w := range want {
		if got[i].Index != w || got[i].Score != arms[w].Mean() {
			t.Fatalf("mean ranking %v, want indexes %v with their means", got, want)
		}
	}
}

// A clearly better arm wins Thompson top-1 nearly always; an unseen arm
// explores sometimes.
func TestThompsonPrefersTheBestArm(t *testing.T) {
	arms := []Arm{
		DefaultPrior.Arm(1000, 10),  // ~1%
		DefaultPrior.Arm(1000, 100), // ~10%
		DefaultPrior.Arm(1000, 20),  // ~2%
	}
	var rk Ranker
	wins := 0
	for seed := uint64(0); seed < 1000; seed++ {
		if rk.Rank(arms, 1, Thompson, seed, nil)[0].Index == 1 {
			wins++
		}
	}
	if wins < 990 {
		t.Fatalf("best arm ranked first in %d of 1000 requests", wins)
	}
}

func TestTopKAgainstFullSort(t *testing.T) {
	r := NewRand(11)
	buf := make([]Ranked, 0, 64)
	for trial := 0; trial < 2000; trial++ {
		n := int(r.Uint64() % 300)
		k := int(r.Uint64()%70) - 3
		if trial%5 == 0 {
			k = int(r.Uint64() % 300) // heap path, k > insertionMaxK
		}
		scores := make([]float64, n)
		for i := range scores {
			switch trial % 3 {
			case 0:
				scores[i] = r.Float64()
			case 1: // many ties
				scores[i] = float64(r.Uint64() % 5)
			default: // ties and NaN
				scores[i] = float64(r.Uint64() % 4)
				if r.Uint64()%7 == 0 {
					scores[i] = math.NaN()
				}
			}
		}
		want := make([]Ranked, n)
		for i, s := range scores {
			if math.IsNaN(s) {
				s = math.Inf(-1)
			}
			want[i] = Ranked{Index: i, Score: s}
		}
		sort.SliceStable(want, func(i, j int) bool { return before(want[i], want[j]) })
		wantK := max(min(k, n), 0)
		want = want[:wantK]
		got := TopK(scores, k, buf)
		if len(got) != len(want) {
			t.Fatalf("n=%d k=%d: got %d entries, want %d", n, k, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("n=%d k=%d: position %d is %v, want %v\n got %v\nwant %v", n, k, i, got[i], want[i], got, want)
			}
		}
	}
}

func TestTopKKAboveN(t *testing.T) {
	got := TopK([]float64{0.2, 0.9, 0.5}, 10, nil)
	want := []Ranked{{1, 0.9}, {2, 0.5}, {0, 0.2}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestNoAllocationsAfterWarmUp(t *testing.T) {
	arms := testArms(1000, 2)
	var rk Ranker
	dst := make([]Ranked, 0, 20)
	rk.Rank(arms, 20, Thompson, 1, dst)
	allocs := testing.AllocsPerRun(100, func() {
		dst = rk.Rank(arms, 20, Thompson, 7, dst)
		dst = rk.Rank(arms[:400], 20, Mean, 0, dst)
	})
	if allocs != 0 {
		t.Fatalf("Rank allocates %.1f times per call after warm-up", allocs)
	}
}

func TestDecay(t *testing.T) {
	d := Decay{HalfLife: time.Hour}
	h := time.Hour.Milliseconds()
	t0 := int64(1_767_225_600_000)
	c := d.Add(Decayed{}, 8, t0)
	if got := d.At(c, t0+h); math.Abs(got-4) > 1e-12 {
		t.Errorf("after one half-life: %v, want 4", got)
	}
	if got := d.At(c, t0+3*h); math.Abs(got-1) > 1e-12 {
		t.Errorf("after three half-lives: %v, want 1", got)
	}
	if got := d.At(c, t0-h); math.Abs(got-16) > 1e-12 {
		t.Errorf("one half-life before the count's time: %v, want 16", got)
	}
	// Arrival order does not matter (beyond rounding).
	events := []struct {
		amount float64
		at     int64
	}{{1, t0}, {2, t0 + h/2}, {1, t0 - h}, {5, t0 + 2*h}, {3, t0 + h}}
	var inOrder, reversed Decayed
	for _, e := range events {
		inOrder = d.Add(inOrder, e.amount, e.at)
	}
	for i := len(events) - 1; i >= 0; i-- {
		reversed = d.Add(reversed, events[i].amount, events[i].at)
	}
	end := t0 + 3*h
	want := 0.0
	for _, e := range events {
		want += e.amount * math.Exp2(-float64(end-e.at)/float64(h))
	}
	for name, c := range map[string]Decayed{"in order": inOrder, "reversed": reversed} {
		if got := d.At(c, end); math.Abs(got-want) > 1e-12*want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	// Replaying the same sequence gives bit-identical numbers.
	var replay Decayed
	for _, e := range events {
		replay = d.Add(replay, e.amount, e.at)
	}
	if replay != inOrder {
		t.Errorf("replay %v differs from first pass %v", replay, inOrder)
	}
	// No decay.
	none := Decay{}
	if got := none.At(none.Add(none.Add(Decayed{}, 2, t0), 3, t0+100*h), t0+1000*h); got != 5 {
		t.Errorf("without decay: %v, want 5", got)
	}
	if (Decay{HalfLife: -1}).Validate() == nil {
		t.Error("negative half-life accepted")
	}
}
