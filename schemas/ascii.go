package schemas

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// printableASCII reports whether every byte of s is printable ASCII (0x20
// to 0x7e): what ids almost always are, checked eight bytes at a time, so
// that the scorer's per-candidate checks (no control character, valid
// UTF-8) cost one pass.
func printableASCII[T ~string | ~[]byte](s T) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if x&hi8 != 0 {
			return false // a byte of 0x80 or more
		}
		// Bytes below 0x80 from here: a byte below 0x20, and a byte that
		// is 0x7f (zero once xored with it), set their high bit.
		y := x ^ 0x7f*lo8
		if ((x-0x20*lo8)&^x|(y-lo8)&^y)&hi8 != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}
