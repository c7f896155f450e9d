package hot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/banditstream/banditstream/store/state"
)

// Keys lays out the hot tier's keys. Every key carries a hash tag, so one
// Lua script only ever touches keys of one Redis Cluster slot, and the same
// code runs on Redis, Redis Cluster and Dragonfly (--lock_on_hashtags).
//
// Arms are spread over Shards shards, hash tag {<shard>}; each shard keeps,
// next to its arms, the offset watermark of every (topic, partition) that
// has written to it:
//
//	<prefix>:a:{<shard>}:<context>\x1f<item>   hash: per-type counts, t = last event time,
//	                                           with decay the decayed counts as of t
//	<prefix>:wm:{<shard>}                      hash: "<topic>/<partition>" → last applied offset
//
// Ids and contexts never hold control characters (schemas rejects them),
// so \x1f separates them unambiguously.
type Keys struct {
	// Prefix starts every key; a different prefix is a separate namespace
	// (a shadow rebuild, a test). Default "bs".
	Prefix string
	// Shards is the number of arm shards. More shards spread load over more
	// cluster slots; each shard costs one script call per batch that touches
	// it. It must never change for a given prefix. Default 256.
	Shards int
	// HalfLife is the namespace's decay half-life (0: none): each arm
	// also keeps its counts decayed by event time to its latest event
	// (fields di, dc, dw, da, do). Like Shards, it must never change for a
	// given prefix; a namespace gets another half-life by a replay into a
	// new prefix.
	HalfLife time.Duration
}

// DefaultKeys returns the default layout.
func DefaultKeys() Keys { return Keys{Prefix: "bs", Shards: 256} }

// Validate reports a layout that cannot work.
func (k Keys) Validate() error {
	if k.Prefix == "" || strings.ContainsAny(k.Prefix, "{}") {
		return errors.New("store: key prefix must be non-empty and contain no braces")
	}
	if k.HalfLife < 0 {
		return errors.New("store: the decay half-life must not be negative")
	}
	if k.Shards < 1 || k.Shards > 16384 {
		return fmt.Errorf("store: shards must be between 1 and 16384, got %d", k.Shards)
	}
	return nil
}

// Shard returns the shard of an arm.
func (k Keys) Shard(a state.Arm) int { return state.Shard(a, k.Shards) }

// ArmKey returns the hash key of an arm in shard.
func (k Keys) ArmKey(shard int, a state.Arm) string {
	var b strings.Builder
	b.Grow(len(k.Prefix) + len(a.Context) + len(a.Item) + 16)
	b.WriteString(k.Prefix)
	b.WriteString(":a:{")
	b.WriteString(strconv.Itoa(shard))
	b.WriteString("}:")
	b.WriteString(a.Context)
	b.WriteByte(0x1f)
	b.WriteString(a.Item)
	return b.String()
}

// WatermarkKey returns the key of a shard's watermark hash.
func (k Keys) WatermarkKey(shard int) string {
	return k.Prefix + ":wm:{" + strconv.Itoa(shard) + "}"
}

func (k Keys) armIndexKey(shard int) string {
	return k.Prefix + ":ai:{" + strconv.Itoa(shard) + "}"
}

// partitionKey holds the last offset of a partition applied to every shard.
func (k Keys) partitionKey(topic string, partition int) string {
	return k.Prefix + ":pwm:{" + watermarkField(topic, partition) + "}"
}

// pendingKey is the sorted set of hot users with events of a partition not
// yet in the cold tier, scored by the oldest such offset (or lower).
func (k Keys) pendingKey(field string) string {
	return k.Prefix + ":pend:{" + field + "}"
}

// watermarkField names a (topic, partition) in a watermark hash.
func watermarkField(topic string, partition int) string {
	return topic + "/" + strconv.Itoa(partition)
}

// countFields are the hash fields of the counts, by state.TypeIndex.
var countFields = [state.NumEventTypes]string{"i", "c", "w", "a", "o"}

// decayedFields are the hash fields of the decayed counts, by
// state.TypeIndex.
var decayedFields = [state.NumEventTypes]string{"di", "dc", "dw", "da", "do"}

// armFields are every field of an arm read back: counts, the last event
// time, the decayed counts.
var armFields = []string{"i", "c", "w", "a", "o", "t", "di", "dc", "dw", "da", "do"}

// Slot is Redis Cluster's key slot: CRC16 (XMODEM) of the hash tag (the
// bytes between the first '{' and the first '}' after it, if any) or of
// the whole key, mod 16384.
func Slot(key string) int {
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
