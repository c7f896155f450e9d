package hot

import (
	"encoding/binary"
	"strings"
	"testing"
)

// slot is Redis Cluster's key slot: CRC16 (XMODEM) of the hash tag — the
// bytes between the first '{' and the first '}' after it, if any — or of
// the whole key, mod 16384.
func slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// Every key of a user lands in one cluster slot, whatever the id holds;
// the keys of different users stay distinct.
func TestUserKeysShareASlot(t *testing.T) {
	if got := slot("123456789"); got != 0x31C3%16384 {
		t.Fatalf("CRC16 of 123456789 = %#x, want 0x31c3 (the reference value)", got)
	}
	// The examples of the Redis Cluster specification.
	if slot("{user1000}.following") != slot("{user1000}.followers") || slot("foo{bar}{zap}") != slot("bar") ||
		slot("foo{{bar}}zap") != slot("{bar") || slot("foo{}{bar}") == slot("bar") {
		t.Fatal("hash tags are not read as Redis reads them")
	}
	hostile := []string{"u-1", "}x", "a}b{", "{", "}", "{}", "}{", "{{}}", "a{b}c", "{x}", "ü{ñ}", ":m", "a:m", strings.Repeat("}", 256), "x\x1fy"}
	k := DefaultKeys()
	seen := map[string]string{}
	for _, user := range hostile {
		keys := append(k.userKeys(user), k.userKey(user, "k"))
		want := slot(keys[0])
		for _, key := range keys {
			if got := slot(key); got != want {
				t.Errorf("user %q: %s in slot %d, %s in slot %d", user, keys[0], want, key, got)
			}
			if other, dup := seen[key]; dup {
				t.Errorf("users %q and %q share the key %s", other, user, key)
			}
			seen[key] = user
		}
	}
}

// A record's position hash, continued from the partition's, is the hash
// of the whole position: windows written before stay readable.
func TestDedupRecordHashesThePosition(t *testing.T) {
	rec := dedupRecord(fnv64("interactions/3/"), 1234, "e-1")
	want := make([]byte, 16)
	binary.BigEndian.PutUint64(want[:8], fnv64("e-1"))
	binary.BigEndian.PutUint64(want[8:], fnv64("interactions/3/1234"))
	if rec != string(want) {
		t.Fatalf("record %x, want %x", rec, want)
	}
}
