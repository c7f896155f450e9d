package armcache

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/banditstream/banditstream/sampler"
)

func cacheItems(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

func putAll(c *Cache, ctx string, items []string, fetched int64) {
	entries := make([]Entry, len(items))
	for i, it := range items {
		a, _ := sampler.NewArm(float64(i+1), 2)
		entries[i] = Entry{Context: ctx, Item: it, Arm: a}
	}
	c.Put(entries, fetched)
}

func TestArmCache(t *testing.T) {
	const maxAge = 1000
	t.Run("hit returns the stored posterior", func(t *testing.T) {
		c := New(1<<20, maxAge, 4*maxAge)
		items := cacheItems("sku-", 10)
		putAll(c, "home", items, 100)
		arms := make([]sampler.Arm, 10)
		if misses := c.Lookup("home", items, 150, arms, nil, nil); len(misses) != 0 {
			t.Fatalf("misses %v", misses)
		}
		for i, a := range arms {
			if a.Alpha() != float64(i+1) {
				t.Fatalf("item %d: α %v, want %d", i, a.Alpha(), i+1)
			}
		}
		if misses := c.Lookup("search", items[:3], 150, arms, nil, nil); len(misses) != 3 {
			t.Fatalf("another context: misses %v, want all 3", misses)
		}
	})
	t.Run("older than the maximum age is used and marked for refresh", func(t *testing.T) {
		c := New(1<<20, maxAge, 4*maxAge)
		items := cacheItems("sku-", 4)
		putAll(c, "", items, 100)
		arms := make([]sampler.Arm, 4)
		if misses := c.Lookup("", items[:2], 100+maxAge, arms, nil, nil); len(misses) != 0 {
			t.Fatalf("at the maximum age: misses %v", misses)
		}
		if list := c.RefreshList(nil, 10); len(list) != 0 {
			t.Fatalf("fresh arms marked for refresh: %v", list)
		}
		if misses := c.Lookup("", items[:2], 101+maxAge, arms, nil, nil); len(misses) != 0 || c.stale.Load() != 2 {
			t.Fatalf("past the maximum age: misses %v, stale %d; want none and 2", misses, c.stale.Load())
		}
		list := c.RefreshList(nil, 10)
		if len(list) != 2 || list[0].Item != "sku-0" || list[1].Item != "sku-1" {
			t.Fatalf("marked for refresh: %v, want sku-0 and sku-1", list)
		}
		putAll(c, "", items[:2], 200+maxAge)
		if list := c.RefreshList(nil, 10); len(list) != 0 {
			t.Fatalf("still marked after the refresh: %v", list)
		}
		if misses := c.Lookup("", items, 101+4*maxAge, arms, nil, nil); len(misses) != 2 || misses[0] != 2 {
			t.Fatalf("past the maximum staleness: misses %v, want items 2 and 3", misses)
		}
	})
	t.Run("bounded in bytes, recently used kept", func(t *testing.T) {
		limit := int64(100 * slotBytes)
		c := New(limit, maxAge, 4*maxAge)
		hot := cacheItems("hot-", 20)
		putAll(c, "home", hot, 100)
		arms := make([]sampler.Arm, len(hot))
		for round := 0; round < 50; round++ {
			putAll(c, "home", cacheItems("cold-"+strconv.Itoa(round)+"-", 30), 100)
			if misses := c.Lookup("home", hot, 100, arms, nil, nil); len(misses) != 0 {
				t.Fatalf("round %d: %d recently used arms evicted", round, len(misses))
			}
		}
		n, bytes := c.Size()
		if bytes > limit || n > 100 || n < 50 {
			t.Fatalf("%d arms in %d bytes; want at most 100 arms in %d bytes", n, bytes, limit)
		}
		if c.evictions.Load() == 0 {
			t.Fatal("nothing evicted")
		}
	})
	t.Run("never returns another arm's posterior under churn", func(t *testing.T) {
		// Short and long ids, two contexts, a bound that forces evictions
		// and table entries shifted back on every removal.
		c := New(int64(300*(slotBytes+100)), 1<<62, 1<<62)
		r := rand.New(rand.NewPCG(1, 2))
		truth := map[[2]string]float64{}
		for step := 0; step < 20_000; step++ {
			ctx := []string{"home", "search"}[r.IntN(2)]
			item := "sku-" + strconv.Itoa(r.IntN(2000))
			if r.IntN(4) == 0 {
				item += strings.Repeat("x", 40) // kept out of the slot
			}
			if r.IntN(2) == 0 {
				alpha := float64(1 + step)
				a, _ := sampler.NewArm(alpha, 1)
				c.Put([]Entry{{Context: ctx, Item: item, Arm: a}}, 1)
				truth[[2]string{ctx, item}] = alpha
				continue
			}
			arms := make([]sampler.Arm, 1)
			if misses := c.Lookup(ctx, []string{item}, 1, arms, nil, nil); len(misses) == 0 {
				if want := truth[[2]string{ctx, item}]; arms[0].Alpha() != want {
					t.Fatalf("step %d: %s/%s has α %v, want %v", step, ctx, item, arms[0].Alpha(), want)
				}
			}
		}
		n, bytes := c.Size()
		if c.evictions.Load() == 0 || bytes > c.maxBytes || c.used != n {
			t.Fatalf("%d arms, %d table entries, %d bytes of %d, %d evictions", n, c.used, bytes, c.maxBytes, c.evictions.Load())
		}
	})
	t.Run("bounded in contexts", func(t *testing.T) {
		// Contexts are the clients' strings: 200,000 of them, each with one
		// arm, in a 64 KiB cache; a context is kept only while it has arms,
		// and its bytes count against the bound.
		const limit = 64 << 10
		c := New(limit, 1<<62, 1<<62)
		a, _ := sampler.NewArm(3, 1)
		for i := range 200_000 {
			ctx := "context-" + strconv.Itoa(i) + strings.Repeat("c", 200)
			c.Put([]Entry{{Context: ctx, Item: "sku", Arm: a}}, 1)
		}
		n, bytes := c.Size()
		if len(c.contexts) > n || len(c.ctxNames)-len(c.ctxFree) != len(c.contexts) || bytes > limit {
			t.Fatalf("%d contexts for %d arms (%d numbered, %d free), %d bytes of %d", len(c.contexts), n, len(c.ctxNames), len(c.ctxFree), bytes, limit)
		}
		if len(c.ctxNames) > 2*n+1 {
			t.Fatalf("%d context numbers for %d arms: freed numbers are not reused", len(c.ctxNames), n)
		}
		// Reused numbers never answer for the context that had them.
		truth := map[string]float64{}
		r := rand.New(rand.NewPCG(3, 4))
		for step := range 20_000 {
			ctx := "ctx-" + strconv.Itoa(r.IntN(500))
			if r.IntN(2) == 0 {
				arm, _ := sampler.NewArm(float64(1+step), 1)
				c.Put([]Entry{{Context: ctx, Item: "sku", Arm: arm}}, 1)
				truth[ctx] = float64(1 + step)
				continue
			}
			arms := make([]sampler.Arm, 1)
			if misses := c.Lookup(ctx, []string{"sku"}, 1, arms, nil, nil); len(misses) == 0 && arms[0].Alpha() != truth[ctx] {
				t.Fatalf("step %d: %s has α %v, want %v", step, ctx, arms[0].Alpha(), truth[ctx])
			}
		}
	})
	t.Run("disabled", func(t *testing.T) {
		c := New(-1, maxAge, 4*maxAge)
		putAll(c, "", cacheItems("a", 5), 100)
		if n, _ := c.Size(); n != 0 {
			t.Fatalf("a disabled cache holds %d arms", n)
		}
	})
}
