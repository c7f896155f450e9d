// Package state holds the types the pipeline's stages and its storage
// speak: arms and their counts, the deltas a batch adds, user events and
// sessions, snapshots, and the errors a store reports. It depends on
// schemas only, so consumers and producers link no storage client.
package state

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
)

// NumEventTypes is the number of event types counted per arm.
const NumEventTypes = 5

// TypeIndex maps an event type to its index in Counts (impression 0, click
// 1, wishlist 2, add_to_cart 3, order 4), or -1.
func TypeIndex(t schemas.EventType) int {
	if t < schemas.Impression || t > schemas.Order {
		return -1
	}
	return int(t - schemas.Impression)
}

// Arm names an arm: an item in a context.
type Arm struct {
	Context string
	Item    string
}

// Shard returns the shard of an arm among shards shards: the FNV-1a hash of
// context, 0x1f and item, modulo shards.
func Shard(a Arm, shards int) int {
	h := fnv.New64a()
	_, _ = h.Write([]byte(a.Context))
	_, _ = h.Write([]byte{0x1f})
	_, _ = h.Write([]byte(a.Item))
	return int(h.Sum64() % uint64(shards))
}

// Counts are an arm's event counts by type, and the time of its latest
// event (Unix ms). Trials and reward follow from them and the weights.
// With decay, Decayed are the same counts decayed by event time to
// LastEventMs (see sampler.Decay); without, they stay zero.
type Counts struct {
	ByType      [NumEventTypes]int64
	Decayed     [NumEventTypes]float64
	LastEventMs int64
}

// Observe counts one event of type typ at atMs.
func (c *Counts) Observe(typ int, atMs int64, d sampler.Decay) {
	c.ByType[typ]++
	if d.On() {
		if atMs > c.LastEventMs {
			f := d.Factor(atMs - c.LastEventMs)
			for i := range c.Decayed {
				c.Decayed[i] *= f
			}
			c.Decayed[typ]++
		} else {
			c.Decayed[typ] += d.Factor(c.LastEventMs - atMs)
		}
	}
	c.LastEventMs = max(c.LastEventMs, atMs)
}

// Add adds o to c, the decayed counts as of the later of their times.
func (c *Counts) Add(o Counts, d sampler.Decay) {
	at := max(c.LastEventMs, o.LastEventMs)
	if d.On() {
		fc, fo := d.Factor(at-c.LastEventMs), d.Factor(at-o.LastEventMs)
		for i := range c.Decayed {
			c.Decayed[i] = c.Decayed[i]*fc + o.Decayed[i]*fo
		}
	}
	for i := range c.ByType {
		c.ByType[i] += o.ByType[i]
	}
	c.LastEventMs = at
}

// At returns the counts by type as of atMs: decayed to atMs with decay,
// the plain counts without.
func (c *Counts) At(atMs int64, d sampler.Decay) [NumEventTypes]float64 {
	var out [NumEventTypes]float64
	if !d.On() {
		for i, n := range c.ByType {
			out[i] = float64(n)
		}
		return out
	}
	f := d.Factor(atMs - c.LastEventMs)
	for i, v := range c.Decayed {
		out[i] = v * f
	}
	return out
}

// Impressions returns the number of trials.
func (c Counts) Impressions() int64 { return c.ByType[0] }

// ArmDelta is what a batch adds to one arm.
type ArmDelta struct {
	Arm    Arm
	Counts Counts
}

// NoWatermark is the watermark of a (shard, partition) never written.
const NoWatermark int64 = -1

// ShardBatch is one shard's part of a batch.
type ShardBatch struct {
	Shard    int
	Expected int64 // the watermark read before; NoWatermark if none
	Deltas   []ArmDelta
}

// HistoryEvent is one event of a user's history.
type HistoryEvent struct {
	UserID      string
	EventTimeMs int64
	EventID     string
	ItemID      string
	Context     string
	Type        int32
	SessionID   string
	Value       float64
}

// UserEvent is one event applied to a user's hot state, with its offset.
type UserEvent struct {
	Offset int64
	Event  HistoryEvent
}

// SessionStats is what the scorer reads of a user: whether the session is
// hot and, if it is, the user's own counts per arm.
type SessionStats struct {
	Loaded bool
	Arms   map[Arm]Counts // nil when not loaded or empty
}

// UserState is what the cold tier keeps of an offloaded user.
type UserState struct {
	UserID string
	// Version counts the writes to the user's hot state, across sessions.
	Version int64
	// ArmCounts are the user's own counts per arm ("context\x1fitem"), in
	// TypeIndex order.
	ArmCounts map[string][]int64
	// Watermarks are the user's offset watermarks per "topic/partition".
	Watermarks map[string]int64
	// Dedup is the user's deduplication window: the records of the latest
	// events' ids and positions, and whether each counted (the hot tier's
	// format, carried as it is).
	Dedup     []byte
	FlushedMs int64
}

// Snapshot describes a complete arm-count snapshot.
type Snapshot struct {
	ID         int64
	Epoch      string
	Shards     int
	TakenMs    int64
	ReplayFrom map[string]int64 // "topic/partition" → first offset to replay
}

// ShardSnapshot is one shard of a snapshot: its watermarks and its arms'
// counts ("context\x1fitem" → five counts and the last event time, then,
// in a namespace with decay, the five decayed counts as the bits of their
// IEEE 754 doubles: see EncodeCounts).
type ShardSnapshot struct {
	Shard      int
	Watermarks map[string]int64
	Arms       map[string][]int64
}

// EncodeCounts returns c as a snapshot carries it: the five counts, the
// last event time and, when some decayed count is not zero, the five
// decayed counts as the bits of their doubles, so they round-trip exactly.
func EncodeCounts(c Counts) []int64 {
	out := make([]int64, 0, 2*NumEventTypes+1)
	out = append(out, c.ByType[:]...)
	out = append(out, c.LastEventMs)
	if c.Decayed != ([NumEventTypes]float64{}) {
		for _, v := range c.Decayed {
			out = append(out, int64(math.Float64bits(v)))
		}
	}
	return out
}

// DecodeCounts is EncodeCounts' inverse.
func DecodeCounts(v []int64) (Counts, error) {
	var c Counts
	if len(v) != NumEventTypes+1 && len(v) != 2*NumEventTypes+1 {
		return c, fmt.Errorf("store: %d numbers for an arm's counts, want %d or %d", len(v), NumEventTypes+1, 2*NumEventTypes+1)
	}
	copy(c.ByType[:], v)
	c.LastEventMs = v[NumEventTypes]
	for i, b := range v[NumEventTypes+1:] {
		c.Decayed[i] = math.Float64frombits(uint64(b))
	}
	return c, nil
}

var (
	// ErrConflict means a shard's watermark was not the expected one:
	// another writer applied events of the same partition. Re-read the
	// watermarks and filter again.
	ErrConflict = errors.New("store: watermark changed by another writer")
	// ErrHotLost means the hot tier lost its state since the writer read
	// its watermarks: recover it, then replay from the earliest offset.
	ErrHotLost = errors.New("store: hot tier state lost")
	// ErrLockLost means a session loader no longer holds the user's load
	// lock (it expired while the loader stalled, and another may have
	// loaded since): what it read may be stale, so nothing was installed.
	ErrLockLost = errors.New("store: session-load lock lost")
	// ErrHotFull means the hot tier refused a write for want of memory
	// (Redis at maxmemory with noeviction): nothing was lost, and the same
	// write succeeds once memory frees.
	ErrHotFull = errors.New("store: hot tier full")
	// ErrRefused means a store refused a write for what it was given (a
	// key holding another kind of value, a script failing on it): the same
	// write fails again, so the record goes to the dead-letter topic.
	ErrRefused = errors.New("store: write refused")
	// ErrNotFound means the cold tier holds nothing for the key.
	ErrNotFound = errors.New("store: not found")
)

// SessionLimits bound what a hot session holds: the recent-history list's
// length, and the pending events (not yet in the cold tier) past which the
// session is due for a flush without eviction (0: no bound in number), and
// the user's own counts, one per arm and event type (0: no bound), and the
// events whose ids are remembered to count each once (0: none).
type SessionLimits struct {
	HistoryCap   int
	FlushPending int
	UserCounts   int
	DedupWindow  int
}

// HotSession is a hot user's session as read for an offload: what the cold
// tier gets, and what an eviction checks has not changed since. Its pending
// events, those not yet in the cold tier, are numbered PendingStart up to
// PendingEnd (exclusive) and read in chunks.
type HotSession struct {
	User         string
	Epoch        string // the hot tier's epoch the session was loaded in
	SessionID    string
	Version      int64
	SeenMs       int64 // the last activity
	PendingStart int64 // the sequence number of the oldest pending event
	PendingEnd   int64 // the sequence number after the newest pending event
	State        UserState
}

// ContextPrior is the prior fitted to one context's arms and how many arms
// the fit used.
type ContextPrior struct {
	Prior sampler.Prior
	Arms  int
}

// PriorFit is a fit of per-context priors: when it was made (Unix ms) and
// the prior of each context fitted. A context missing has the global prior.
type PriorFit struct {
	FittedMs int64
	Contexts map[string]ContextPrior
}
