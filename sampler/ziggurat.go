package sampler

import "math"

// Ziggurat tables (Marsaglia and Tsang, "The Ziggurat Method for Generating
// Random Variables", 2000), computed once from their defining constants.
const (
	zigNormR = 3.6541528853610088   // start of the normal tail (256 layers)
	zigNormV = 4.92867323399e-3     // area of each normal layer
	zigExpR  = 7.697117470131487    // start of the exponential tail
	zigExpV  = 3.949659822581572e-3 // area of each exponential layer
	zigM1    = 2147483648.0         // 2^31: normal values are int32
	zigM2    = 4294967296.0         // 2^32: exponential values are uint32
)

var (
	zigKn [256]uint32
	zigWn [256]float64
	zigFn [256]float64
	// zigXn[i] = zigKn[i]·zigWn[i]: |j| < zigKn[i] exactly when
	// |j·zigWn[i]| < zigXn[i], as the product is monotone and one-to-one
	// on 32-bit integers.
	zigXn [256]float64
	zigKe [256]uint32
	zigWe [256]float64
	zigFe [256]float64
)

func init() {
	dn, tn := zigNormR, zigNormR
	q := zigNormV / math.Exp(-0.5*dn*dn)
	zigKn[0] = uint32((dn / q) * zigM1)
	zigKn[1] = 0
	zigWn[0] = q / zigM1
	zigWn[255] = dn / zigM1
	zigFn[0] = 1
	zigFn[255] = math.Exp(-0.5 * dn * dn)
	for i := 254; i >= 1; i-- {
		dn = math.Sqrt(-2 * math.Log(zigNormV/dn+math.Exp(-0.5*dn*dn)))
		zigKn[i+1] = uint32((dn / tn) * zigM1)
		tn = dn
		zigFn[i] = math.Exp(-0.5 * dn * dn)
		zigWn[i] = dn / zigM1
	}
	for i := range zigXn {
		zigXn[i] = float64(zigKn[i]) * zigWn[i]
	}

	de, te := zigExpR, zigExpR
	q = zigExpV / math.Exp(-de)
	zigKe[0] = uint32((de / q) * zigM2)
	zigKe[1] = 0
	zigWe[0] = q / zigM2
	zigWe[255] = de / zigM2
	zigFe[0] = 1
	zigFe[255] = math.Exp(-de)
	for i := 254; i >= 1; i-- {
		de = -math.Log(zigExpV/de + math.Exp(-de))
		zigKe[i+1] = uint32((de / te) * zigM2)
		te = de
		zigFe[i] = math.Exp(-de)
		zigWe[i] = de / zigM2
	}
}
