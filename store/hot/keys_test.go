package hot

import (
	"encoding/binary"
	"strings"
	"testing"
)

// Every key of a user lands in one cluster slot, whatever the id holds;
// the keys of different users stay distinct.
func TestUserKeysShareASlot(t *testing.T) {
	if got := Slot("123456789"); got != 0x31C3%16384 {
		t.Fatalf("CRC16 of 123456789 = %#x, want 0x31c3 (the reference value)", got)
	}
	// The examples of the Redis Cluster specification.
	if Slot("{user1000}.following") != Slot("{user1000}.followers") || Slot("foo{bar}{zap}") != Slot("bar") ||
		Slot("foo{{bar}}zap") != Slot("{bar") || Slot("foo{}{bar}") == Slot("bar") {
		t.Fatal("hash tags are not read as Redis reads them")
	}
	hostile := []string{"u-1", "}x", "a}b{", "{", "}", "{}", "}{", "{{}}", "a{b}c", "{x}", "ü{ñ}", ":m", "a:m", strings.Repeat("}", 256), "x\x1fy"}
	k := DefaultKeys()
	seen := map[string]string{}
	for _, user := range hostile {
		keys := append(k.userKeys(user), k.userKey(user, "k"))
		want := Slot(keys[0])
		for _, key := range keys {
			if got := Slot(key); got != want {
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
