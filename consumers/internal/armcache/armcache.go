// Package armcache keeps arms' posteriors in a scorer's process, bounded in
// bytes and in age, for random lookups in catalogues of millions of arms.
package armcache

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/banditstream/banditstream/sampler"
)

// Cache keeps arms' posteriors in process, shared by a scorer's
// partition workers, bounded in bytes and in age.
//
// It is built for random lookups in a catalogue of millions of arms: an
// open-addressing table of 8-byte entries (a hash tag and a slot number)
// finds a 128-byte slot that holds the posterior, the full hash, the
// context's number and the item id inline (ids longer than inlineKey
// bytes live in a side map), so a hit costs about two cache misses and
// the garbage collector has no pointers to scan in either array.
//
// An arm used while older than the maximum age is still used, and marked
// for the background refresh (RefreshList, then Refresh), which reads the
// marked arms again in pipelines: requests do not wait for it. Only an arm
// older than the maximum staleness (the refresh cannot keep up, or the hot
// tier is unreachable) is read again before use, like a missing one.
//
// Readers hold the read lock for a whole request's lookups; writers take
// the write lock once per batch of read arms. Eviction is CLOCK: a
// lookup sets the slot's reference bit, and the hand evicts the first slot
// found without it, clearing the bits it passes.
type Cache struct {
	mu       sync.RWMutex
	seed     maphash.Seed
	contexts map[string]uint32 // context → number (from 1)
	ctxNames []string          // by number − 1; "" once freed
	ctxRefs  []int32           // slots of each context, by number − 1
	ctxFree  []uint32          // numbers of freed contexts, for reuse
	table    []uint64          // 0: empty; else tag<<32 | slot+1
	slots    []cacheSlot
	long     map[int32]string // item ids longer than inlineKey, by slot
	free     []int32
	used     int
	bytes    int64
	maxBytes int64
	maxAge   int64 // ns: older arms are refreshed in the background
	maxStale int64 // ns: older arms are read again before use
	hand     int

	hits, misses, stale, evictions, refreshed atomic.Int64
}

// Stats counts a cache's lookups since it was made.
type Stats struct {
	// Hits were found usable; Misses were missing or older than the maximum
	// staleness; Stale were hits older than the maximum age, marked for
	// refresh; Refreshed were put again by Refresh; Evictions made room.
	Hits, Misses, Stale, Refreshed, Evictions int64
	// Arms, Contexts and Bytes are what the cache holds now.
	Arms, Contexts int
	Bytes          int64
}

// Stats returns the cache's counters and size.
func (c *Cache) Stats() Stats {
	arms, bytes := c.Size()
	contexts := c.Contexts()
	return Stats{Contexts: contexts,
		Hits: c.hits.Load(), Misses: c.misses.Load(), Stale: c.stale.Load(),
		Refreshed: c.refreshed.Load(), Evictions: c.evictions.Load(), Arms: arms, Bytes: bytes,
	}
}

// Bits of cacheSlot.ref.
const (
	refUsed    = 1 // looked up since the hand last passed
	refRefresh = 2 // used while older than the maximum age: to refresh
)

// inlineKey is the longest item id kept in the slot itself.
const inlineKey = 39

type cacheSlot struct {
	arm     sampler.Arm
	fetched int64 // Unix ns of the read from the hot tier
	hash    uint64
	ctx     uint32 // the context's number; 0: a free slot
	ref     atomic.Uint32
	klen    uint8 // length of an inline id; inlineKey+1: the id is in long
	key     [inlineKey]byte
}

// slotBytes is what a cached arm costs: its slot and, right after the
// table grew, eight table entries. A long id costs its length and a map
// entry more.
const (
	slotBytes    = 128 + 8*8
	longKeyBytes = 64
)

// New returns a cache of at most maxBytes (none is kept when it is not
// positive) whose arms are refreshed in the background once older than
// maxAge and read again before use once older than maxStale.
func New(maxBytes int64, maxAge, maxStale time.Duration) *Cache {
	return &Cache{
		seed: maphash.MakeSeed(), contexts: map[string]uint32{}, long: map[int32]string{},
		maxBytes: maxBytes, maxAge: maxAge.Nanoseconds(), maxStale: max(maxStale, maxAge).Nanoseconds(),
	}
}

func (c *Cache) hash(ctx uint32, item string) uint64 {
	h := maphash.String(c.seed, item) ^ uint64(ctx)*0x9e3779b97f4a7c15
	return h ^ h>>29
}

func (c *Cache) keyEqual(s int32, slot *cacheSlot, item string) bool {
	if int(slot.klen) <= inlineKey {
		return int(slot.klen) == len(item) && string(slot.key[:slot.klen]) == item
	}
	return c.long[s] == item
}

// find returns the slot of item in context ctx, or -1.
func (c *Cache) find(ctx uint32, item string) int32 {
	if len(c.table) == 0 {
		return -1
	}
	return c.findFrom(ctx, item, c.hash(ctx, item))
}

// findFrom is find with the hash h of (ctx, item) computed.
func (c *Cache) findFrom(ctx uint32, item string, h uint64) int32 {
	tag := uint32(h >> 32)
	mask := uint64(len(c.table) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		e := c.table[i]
		if e == 0 {
			return -1
		}
		if uint32(e>>32) != tag {
			continue
		}
		s := int32(uint32(e) - 1)
		slot := &c.slots[s]
		if slot.hash == h && slot.ctx == ctx && c.keyEqual(s, slot, item) {
			return s
		}
	}
}

// lookupGroup is how many candidates lookup resolves together: it first
// computes their hashes and loads their table entries, then their slots,
// so that the memory reads of a group are in flight at the same time
// rather than one candidate after another.
const lookupGroup = 16

// Lookup copies into arms[i] the cached posterior of items[i] in context
// ctx and, if fetched is not nil, into fetched[i] the time it was read
// (Unix ns), and appends to misses the indexes of those missing or older
// than the cache's maximum staleness at now; those older than the maximum
// age are used and marked for the background refresh.
func (c *Cache) Lookup(ctx string, items []string, now int64, arms []sampler.Arm, fetched []int64, misses []int32) []int32 {
	fresh, usable := now-c.maxAge, now-c.maxStale
	var hits, stale int64
	var hs, es [lookupGroup]uint64
	c.mu.RLock()
	id, ok := c.contexts[ctx]
	if !ok || len(c.table) == 0 {
		c.mu.RUnlock()
		for i := range items {
			misses = append(misses, int32(i))
		}
		c.misses.Add(int64(len(items)))
		return misses
	}
	mask := uint64(len(c.table) - 1)
	for base := 0; base < len(items); base += lookupGroup {
		group := items[base:min(base+lookupGroup, len(items))]
		for j, it := range group {
			h := c.hash(id, it)
			hs[j], es[j] = h, c.table[h&mask]
		}
		var hashes [lookupGroup]uint64
		for j := range group {
			if e := es[j]; e != 0 {
				hashes[j] = c.slots[uint32(e)-1].hash
			}
		}
		for j, it := range group {
			i := base + j
			s := int32(-1)
			if e := es[j]; e != 0 && uint32(e>>32) == uint32(hs[j]>>32) && hashes[j] == hs[j] &&
				c.slots[uint32(e)-1].ctx == id && c.keyEqual(int32(uint32(e)-1), &c.slots[uint32(e)-1], it) {
				s = int32(uint32(e) - 1) // found at its home position: the common case
			} else if e != 0 {
				s = c.findFrom(id, it, hs[j])
			}
			if s < 0 {
				misses = append(misses, int32(i))
				continue
			}
			slot := &c.slots[s]
			if slot.fetched < usable {
				misses = append(misses, int32(i))
				continue
			}
			want := uint32(refUsed)
			if slot.fetched < fresh {
				want |= refRefresh
				stale++
			}
			if slot.ref.Load()&want != want {
				slot.ref.Or(want)
			}
			arms[i] = slot.arm
			if fetched != nil {
				fetched[i] = slot.fetched
			}
			hits++
		}
	}
	c.mu.RUnlock()
	c.hits.Add(hits)
	c.stale.Add(stale)
	c.misses.Add(int64(len(items)) - hits)
	return misses
}

// RefreshList appends to dst, up to limit, the arms marked for refresh.
func (c *Cache) RefreshList(dst []Entry, limit int) []Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for s := range c.slots {
		if len(dst) >= limit {
			break
		}
		slot := &c.slots[s]
		if slot.ctx == 0 || slot.ref.Load()&refRefresh == 0 {
			continue
		}
		item := c.long[int32(s)]
		if int(slot.klen) <= inlineKey {
			item = string(slot.key[:slot.klen])
		}
		dst = append(dst, Entry{Context: c.ctxNames[slot.ctx-1], Item: item})
	}
	return dst
}

// Entry is an arm read from the hot tier: its context, its item and its
// posterior.
type Entry struct {
	Context, Item string
	Arm           sampler.Arm
}

// Refresh stores entries read again at fetched (Unix ns) for RefreshList,
// counting them as refreshed.
func (c *Cache) Refresh(entries []Entry, fetched int64) {
	c.Put(entries, fetched)
	c.refreshed.Add(int64(len(entries)))
}

// Put stores entries read at fetched (Unix ns), evicting as needed to stay
// within the byte bound.
func (c *Cache) Put(entries []Entry, fetched int64) {
	if c.maxBytes <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range entries {
		id, ok := c.contexts[e.Context]
		if ok {
			if s := c.find(id, e.Item); s >= 0 {
				slot := &c.slots[s]
				slot.arm, slot.fetched = e.Arm, fetched
				slot.ref.And(^uint32(refRefresh))
				continue
			}
		}
		size := int64(slotBytes)
		if len(e.Item) > inlineKey {
			size += int64(len(e.Item)) + longKeyBytes
		}
		// Make room, counting the context too while it has no slot (an
		// eviction may free it).
		for {
			id, ok = c.contexts[e.Context]
			need := size
			if !ok {
				need += contextBytes(e.Context)
			}
			if c.bytes+need <= c.maxBytes {
				break
			}
			if !c.evictOne() {
				return
			}
		}
		if !ok {
			id = c.addContext(e.Context)
		}
		var s int32
		if n := len(c.free); n > 0 {
			s = c.free[n-1]
			c.free = c.free[:n-1]
		} else {
			if len(c.slots) == cap(c.slots) {
				c.slots = append(c.slots[:cap(c.slots)], make([]cacheSlot, max(cap(c.slots), 1024))...)[:len(c.slots)]
				adviseHugePages(c.slots[:cap(c.slots)])
			}
			c.slots = append(c.slots, cacheSlot{})
			s = int32(len(c.slots) - 1)
		}
		slot := &c.slots[s]
		slot.arm, slot.fetched = e.Arm, fetched
		slot.hash, slot.ctx = c.hash(id, e.Item), id
		c.ctxRefs[id-1]++
		if len(e.Item) <= inlineKey {
			slot.klen = uint8(copy(slot.key[:], e.Item))
		} else {
			slot.klen = inlineKey + 1
			c.long[s] = strings.Clone(e.Item)
		}
		// The reference bit waits for a lookup: an arm read once (a scan of
		// a long tail) goes before those asked for again.
		slot.ref.Store(0)
		c.insert(slot.hash, s)
		c.bytes += size
	}
}

// contextBytes is what a context costs while it has cached arms: its name
// and its map entry.
func contextBytes(name string) int64 { return int64(len(name)) + longKeyBytes }

// addContext numbers a new context, reusing a freed number if any, and
// accounts its bytes. Contexts are the clients' strings: they are kept only
// while they have cached arms, so their number is bounded by the slots'.
func (c *Cache) addContext(ctx string) uint32 {
	name := strings.Clone(ctx)
	var id uint32
	if n := len(c.ctxFree); n > 0 {
		id = c.ctxFree[n-1]
		c.ctxFree = c.ctxFree[:n-1]
		c.ctxNames[id-1], c.ctxRefs[id-1] = name, 0
	} else {
		c.ctxNames = append(c.ctxNames, name)
		c.ctxRefs = append(c.ctxRefs, 0)
		id = uint32(len(c.ctxNames))
	}
	c.contexts[name] = id
	c.bytes += contextBytes(name)
	return id
}

// releaseContext drops a slot's reference to context id, and the context
// itself with its last slot.
func (c *Cache) releaseContext(id uint32) {
	if c.ctxRefs[id-1]--; c.ctxRefs[id-1] > 0 {
		return
	}
	name := c.ctxNames[id-1]
	delete(c.contexts, name)
	c.bytes -= contextBytes(name)
	c.ctxNames[id-1] = ""
	c.ctxFree = append(c.ctxFree, id)
}

// Contexts returns the number of contexts with cached arms.
func (c *Cache) Contexts() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.contexts)
}

// insert adds slot s with hash h to the table, growing it to keep the load
// at most a quarter: most arms are then found at their home position.
func (c *Cache) insert(h uint64, s int32) {
	if 4*(c.used+1) > len(c.table) {
		c.grow()
	}
	mask := uint64(len(c.table) - 1)
	i := h & mask
	for c.table[i] != 0 {
		i = (i + 1) & mask
	}
	c.table[i] = uint64(uint32(h>>32))<<32 | uint64(s+1)
	c.used++
}

func (c *Cache) grow() {
	old := c.table
	c.table = make([]uint64, max(2*len(old), 1024))
	adviseHugePages(c.table)
	c.used = 0
	for _, e := range old {
		if e != 0 {
			s := int32(uint32(e) - 1)
			c.insert(c.slots[s].hash, s)
		}
	}
}

// remove deletes slot s's entry from the table, shifting back the entries
// after it so that every probe sequence stays unbroken.
func (c *Cache) remove(s int32) {
	mask := uint64(len(c.table) - 1)
	i := c.slots[s].hash & mask
	for uint32(c.table[i]) != uint32(s+1) {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; c.table[j] != 0; j = (j + 1) & mask {
		home := c.slots[uint32(c.table[j])-1].hash & mask
		// Move entry j into the hole at i unless its home lies in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			c.table[i] = c.table[j]
			i = j
		}
	}
	c.table[i] = 0
	c.used--
}

// evictOne evicts the first slot at or after the hand whose reference bit
// is clear, clearing bits as it passes. It reports false when nothing is
// left to evict.
func (c *Cache) evictOne() bool {
	n := len(c.slots)
	for range 2*n + 1 {
		if n == 0 {
			return false
		}
		if c.hand >= n {
			c.hand = 0
		}
		s := int32(c.hand)
		slot := &c.slots[s]
		c.hand++
		if slot.ctx == 0 {
			continue
		}
		if slot.ref.Load()&refUsed != 0 {
			slot.ref.And(^uint32(refUsed))
			continue
		}
		c.remove(s)
		size := int64(slotBytes)
		if int(slot.klen) > inlineKey {
			size += int64(len(c.long[s])) + longKeyBytes
			delete(c.long, s)
		}
		c.bytes -= size
		c.free = append(c.free, s)
		c.releaseContext(slot.ctx)
		slot.ctx, slot.klen, slot.fetched = 0, 0, 0
		c.evictions.Add(1)
		return true
	}
	return false
}

// Size returns the number of cached arms and their accounted bytes.
func (c *Cache) Size() (int, int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.slots) - len(c.free), c.bytes
}
