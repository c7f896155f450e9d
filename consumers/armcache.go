package consumers

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/banditstream/banditstream/sampler"
)

// armCache keeps arms' posteriors in process, shared by a scorer's
// partition workers, bounded in bytes and in age.
//
// Items are indexed per context (context → item → slot), so a request,
// which has one context, finds its candidates without building a key per
// candidate. Readers hold the read lock for a whole request's lookups;
// writers take the write lock once per batch of refreshed arms. Eviction
// is CLOCK: a lookup sets the slot's reference bit, and the hand evicts
// the first slot found without it, clearing the bits it passes.
type armCache struct {
	mu       sync.RWMutex
	byCtx    map[string]*ctxIndex
	slots    []cacheSlot
	free     []int32
	bytes    int64
	maxBytes int64
	maxAge   int64 // ns
	hand     int

	hits, misses, stale, evictions atomic.Int64
}

// ctxIndex holds the slots of one context's items; name is the cache's own
// copy of the context, which the slots share.
type ctxIndex struct {
	name  string
	items map[string]int32
}

type cacheSlot struct {
	arm     sampler.Arm
	fetched int64 // Unix ns of the read from the hot tier; 0: free slot
	ref     atomic.Uint32
	ctx     string
	item    string
}

// slotBytes is what a cached arm costs besides its two strings: the slot,
// its entry in the item map, and a share of the map's spare capacity.
const slotBytes = 176

func newArmCache(maxBytes int64, maxAgeNs int64) *armCache {
	return &armCache{byCtx: map[string]*ctxIndex{}, maxBytes: maxBytes, maxAge: maxAgeNs}
}

// lookup copies into arms[i] the cached posterior of items[i] in context
// ctx and appends to misses the indexes of those missing or older than the
// cache's maximum age at now.
func (c *armCache) lookup(ctx string, items []string, now int64, arms []sampler.Arm, misses []int32) []int32 {
	oldest := now - c.maxAge
	var hits, stale int64
	c.mu.RLock()
	var index map[string]int32
	if ci := c.byCtx[ctx]; ci != nil {
		index = ci.items
	}
	for i, it := range items {
		s, ok := index[it]
		if !ok {
			misses = append(misses, int32(i))
			continue
		}
		slot := &c.slots[s]
		if slot.fetched < oldest {
			stale++
			misses = append(misses, int32(i))
			continue
		}
		if slot.ref.Load() == 0 {
			slot.ref.Store(1)
		}
		arms[i] = slot.arm
		hits++
	}
	c.mu.RUnlock()
	c.hits.Add(hits)
	c.stale.Add(stale)
	c.misses.Add(int64(len(items)) - hits - stale)
	return misses
}

// cacheEntry is an arm read from the hot tier.
type cacheEntry struct {
	ctx, item string
	arm       sampler.Arm
}

// put stores entries read at fetched (Unix ns), evicting as needed to stay
// within the byte bound.
func (c *armCache) put(entries []cacheEntry, fetched int64) {
	if c.maxBytes <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range entries {
		ci := c.byCtx[e.ctx]
		if s, ok := ci.lookup(e.item); ok {
			c.slots[s].arm = e.arm
			c.slots[s].fetched = fetched
			continue
		}
		size := slotBytes + int64(len(e.item))
		for c.bytes+size > c.maxBytes && c.evictOne() {
		}
		if c.bytes+size > c.maxBytes {
			return
		}
		if ci == nil {
			ci = &ctxIndex{name: strings.Clone(e.ctx), items: map[string]int32{}}
			c.byCtx[ci.name] = ci
		}
		var s int32
		if n := len(c.free); n > 0 {
			s = c.free[n-1]
			c.free = c.free[:n-1]
		} else {
			c.slots = append(c.slots, cacheSlot{})
			s = int32(len(c.slots) - 1)
		}
		slot := &c.slots[s]
		slot.arm, slot.fetched = e.arm, fetched
		slot.ctx = ci.name
		slot.item = strings.Clone(e.item)
		// The reference bit waits for a lookup: an arm read once (a scan of
		// a long tail) goes before those asked for again.
		slot.ref.Store(0)
		ci.items[slot.item] = s
		c.bytes += size
	}
}

func (ci *ctxIndex) lookup(item string) (int32, bool) {
	if ci == nil {
		return 0, false
	}
	s, ok := ci.items[item]
	return s, ok
}

// evictOne evicts the first slot at or after the hand whose reference bit
// is clear, clearing bits as it passes. It reports false when nothing is
// left to evict.
func (c *armCache) evictOne() bool {
	n := len(c.slots)
	for range 2*n + 1 {
		if n == 0 {
			return false
		}
		if c.hand >= n {
			c.hand = 0
		}
		slot := &c.slots[c.hand]
		c.hand++
		if slot.fetched == 0 {
			continue
		}
		if slot.ref.Load() == 1 {
			slot.ref.Store(0)
			continue
		}
		ci := c.byCtx[slot.ctx]
		delete(ci.items, slot.item)
		if len(ci.items) == 0 {
			delete(c.byCtx, slot.ctx)
		}
		c.bytes -= slotBytes + int64(len(slot.item))
		c.free = append(c.free, int32(c.hand-1))
		*slot = cacheSlot{}
		c.evictions.Add(1)
		return true
	}
	return false
}

// size returns the number of cached arms and their accounted bytes.
func (c *armCache) size() (int, int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.slots) - len(c.free), c.bytes
}
