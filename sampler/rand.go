package sampler

import (
	"math"
	"math/bits"
)

// Rand is a fast 64-bit pseudo-random generator (wyrand: a Weyl sequence
// through a 128-bit multiply-fold; period 2^64, passes BigCrush and
// PractRand) with ziggurat normal and exponential variates. It is not safe
// for concurrent use: each worker owns one. The zero value is a valid
// generator seeded with 0.
type Rand struct {
	s uint64
}

// NewRand returns a generator seeded with seed.
func NewRand(seed uint64) *Rand {
	r := &Rand{}
	r.Seed(seed)
	return r
}

// Seed resets the generator to the stream of seed. Equal seeds give equal
// streams; the seed is mixed so that nearby seeds give unrelated streams.
func (r *Rand) Seed(seed uint64) {
	// splitmix64 finaliser.
	z := seed + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	r.s = z ^ (z >> 31)
}

// Uint64 returns a uniformly distributed 64-bit value.
func (r *Rand) Uint64() uint64 {
	r.s += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(r.s, r.s^0xe7037ed1a0b428db)
	return hi ^ lo
}

// Float64 returns a uniform value in [0, 1) with 53 random bits.
func (r *Rand) Float64() float64 {
	return float64(r.Uint64()>>11) * 0x1p-53
}

// openFloat64 returns a uniform value in (0, 1), for logarithms.
func (r *Rand) openFloat64() float64 {
	return (float64(r.Uint64()>>11) + 0.5) * 0x1p-53
}

// Norm returns a standard normal variate (ziggurat, 256 layers). The layer
// index and the value come from disjoint bits of one 64-bit draw.
func (r *Rand) Norm() float64 {
	u := r.Uint64()
	i := u & 0xff
	j := int32(u >> 32)
	if absInt32(j) < zigKn[i] {
		return float64(j) * zigWn[i]
	}
	return r.normSlow(i, j)
}

// normSlow is the rare ziggurat path: the base strip's tail or a wedge.
func (r *Rand) normSlow(i uint64, j int32) float64 {
	const tail = zigNormR
	for {
		x := float64(j) * zigWn[i]
		if i == 0 {
			// Marsaglia's tail method beyond tail.
			for {
				x = -math.Log(r.openFloat64()) * (1 / tail)
				y := -math.Log(r.openFloat64())
				if y+y >= x*x {
					break
				}
			}
			if j > 0 {
				return tail + x
			}
			return -tail - x
		}
		if zigFn[i]+r.Float64()*(zigFn[i-1]-zigFn[i]) < math.Exp(-0.5*x*x) {
			return x
		}
		u := r.Uint64()
		i = u & 0xff
		j = int32(u >> 32)
		if absInt32(j) < zigKn[i] {
			return float64(j) * zigWn[i]
		}
	}
}

// Exp returns a standard exponential variate (ziggurat, 256 layers).
func (r *Rand) Exp() float64 {
	for {
		u := r.Uint64()
		i := u & 0xff
		j := uint32(u >> 32)
		x := float64(j) * zigWe[i]
		if j < zigKe[i] {
			return x
		}
		if i == 0 {
			return zigExpR - math.Log(r.openFloat64())
		}
		if zigFe[i]+r.Float64()*(zigFe[i-1]-zigFe[i]) < math.Exp(-x) {
			return x
		}
	}
}

func absInt32(j int32) uint32 {
	if j < 0 {
		return uint32(-j)
	}
	return uint32(j)
}
