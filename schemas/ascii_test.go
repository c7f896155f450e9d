package schemas

import (
	"strings"
	"testing"
)

// printableASCII agrees with a byte-by-byte check, at every position of
// every byte value and every length around a word.
func TestPrintableASCII(t *testing.T) {
	slow := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] >= 0x7f {
				return false
			}
		}
		return true
	}
	for n := 0; n <= 19; n++ {
		base := strings.Repeat("a", n)
		if !printableASCII(base) || !printableASCII([]byte(base)) {
			t.Fatalf("%q refused", base)
		}
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				s := base[:pos] + string(rune(c))[:1] + base[pos+1:]
				if c >= 0x80 {
					s = base[:pos] + string([]byte{byte(c)}) + base[pos+1:]
				}
				if got, want := printableASCII(s), slow(s); got != want {
					t.Fatalf("%q: %v, want %v", s, got, want)
				}
			}
		}
	}
	if !printableASCII(" ~ sku-000123 item/with spaces") || printableASCII("sku\u00e9-1") {
		t.Fatal("mixed cases")
	}
}

func FuzzPrintableASCII(f *testing.F) {
	f.Add([]byte("sku-12345678"))
	f.Add([]byte("a\x7fbcdefghij"))
	f.Fuzz(func(t *testing.T, b []byte) {
		want := true
		for _, c := range b {
			want = want && c >= 0x20 && c < 0x7f
		}
		if got := printableASCII(b); got != want {
			t.Fatalf("%q: %v, want %v", b, got, want)
		}
	})
}
