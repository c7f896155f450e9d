package consumers

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"gonum.org/v1/gonum/stat/distuv"
	"google.golang.org/protobuf/proto"

	"github.com/banditstream/banditstream/consumers/internal/armcache"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/state"
)

// BenchmarkScoreCore measures the scorer's in-process work on a batch of
// requests: decode, look up every candidate, sample, rank the top k, encode
// the responses. 400 distinct candidates from a catalogue of 1M arms,
// drawn uniformly (mix=uniform) or by Zipf-distributed popularity
// (mix=zipf, s = 1.1), k = 20, 64 requests per batch (one fetch), every
// arm cached (the steady state). It reports ns/candidate and
// allocs/request beside Go's per-batch figures. `make bench` compares it with a baseline in the same run:
//
//	impl=baseline  a straightforward implementation: proto.Unmarshal, a Go
//	               map of 1M arm counts, gonum's Beta per candidate, a sort
//	               of all candidates, proto.Marshal
//	impl=scorer    the scorer's partition worker, I/O replaced by a
//	               writer that drops the messages
//
// and the scorer with a half-life (impl=scorer-decay) and with a
// per-context prior (impl=scorer-context-prior).

const (
	benchArms       = 1_000_000
	benchCandidates = 400
	benchK          = 20
	benchBatch      = 64
)

type discardWriter struct{}

func (discardWriter) WriteMessages(context.Context, ...kafka.Message) error { return nil }

var benchRequests struct {
	once  sync.Once
	mixes map[string][]record
}

// benchMixes are the candidate mixes: drawn uniformly from the catalogue,
// and by popularity, Zipf-distributed with s = 1.1 (the shape of real
// candidate lists: a few items in most of them).
var benchMixes = []string{"uniform", "zipf"}

// benchCounts returns the counts of catalogue item i: the same in both
// implementations, computed rather than stored so that neither pays for the
// other's memory.
func benchCounts(i int) state.Counts {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	imp := 100 + r.Int64N(100_000)
	return state.Counts{ByType: [state.NumEventTypes]int64{imp, r.Int64N(imp / 10)}}
}

func benchItem(i int) string { return "sku-" + strconv.Itoa(i) }

// requestsForBench returns a batch of requests whose candidates, distinct
// within a request, follow mix.
func requestsForBench(mix string) []record {
	c := &benchRequests
	c.once.Do(func() {
		c.mixes = map[string][]record{}
		for _, mix := range benchMixes {
			r := rand.New(rand.NewPCG(1, 2))
			draw := func() int { return r.IntN(benchArms) }
			if mix == "zipf" {
				z := rand.NewZipf(r, 1.1, 1, benchArms-1)
				draw = func() int { return int(z.Uint64()) }
			}
			for i := 0; i < benchBatch; i++ {
				req := &schemas.ScoreRequest{RequestId: "req-" + strconv.Itoa(i), UserId: "user-" + strconv.Itoa(i), Context: "home", K: benchK}
				seen := map[int]bool{}
				for len(req.Candidates) < benchCandidates {
					if item := draw(); !seen[item] {
						seen[item] = true
						req.Candidates = append(req.Candidates, benchItem(item))
					}
				}
				v, err := schemas.Protobuf.AppendScoreRequest(nil, req)
				if err != nil {
					panic(err)
				}
				c.mixes[mix] = append(c.mixes[mix], record{offset: int64(i), key: []byte(req.UserId), value: v})
			}
		}
	})
	return c.mixes[mix]
}

func BenchmarkScoreCore(b *testing.B) {
	for _, mix := range benchMixes {
		b.Run("mix="+mix, func(b *testing.B) { benchScoreCore(b, requestsForBench(mix)) })
	}
}

func benchScoreCore(b *testing.B, batch []record) {
	perOp := float64(benchBatch * benchCandidates)

	b.Run("impl=baseline", func(b *testing.B) {
		counts := make(map[state.Arm]state.Counts, benchArms)
		for i := 0; i < benchArms; i++ {
			counts[state.Arm{Context: "home", Item: benchItem(i)}] = benchCounts(i)
		}
		runtime.GC()
		src := rand.NewPCG(3, 4)
		type scored struct {
			item  string
			score float64
			mean  float64
		}
		var out [][]byte
		b.ReportAllocs()
		mallocs := startMallocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			out = out[:0]
			for _, r := range batch {
				req := &schemas.ScoreRequest{}
				if err := proto.Unmarshal(r.value, req); err != nil {
					b.Fatal(err)
				}
				all := make([]scored, len(req.Candidates))
				for j, item := range req.Candidates {
					cnt := counts[state.Arm{Context: req.Context, Item: item}]
					alpha := 1 + float64(cnt.ByType[1])
					beta := 1 + float64(cnt.ByType[0]-cnt.ByType[1])
					all[j] = scored{item, distuv.Beta{Alpha: alpha, Beta: beta, Src: src}.Rand(), alpha / (alpha + beta)}
				}
				sort.Slice(all, func(x, y int) bool { return all[x].score > all[y].score })
				resp := &schemas.ScoreResponse{RequestId: req.RequestId, UserId: req.UserId, Context: req.Context}
				for _, s := range all[:min(int(req.K), len(all))] {
					resp.Items = append(resp.Items, &schemas.RankedItem{ItemId: s.item, Score: s.score, Mean: s.mean})
				}
				v, err := proto.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				out = append(out, v)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(perOp*float64(b.N)), "ns/candidate")
		mallocs.report(b)
	})

	// The scorer, every arm cached, without decay and with a six-hour
	// half-life (every cached posterior then rescaled to the request's
	// time: cached half a second before it, as -cache-max-age allows).
	// And with a per-context prior: every posterior then moved to the
	// context's prior.
	for _, v := range []struct {
		name   string
		hl     time.Duration
		priors PriorSource
	}{
		{"impl=scorer", 0, nil},
		{"impl=scorer-decay", 6 * time.Hour, nil},
		{"impl=scorer-context-prior", 0, staticPriors{"home": {Alpha: 2, Beta: 50}}.labelled()},
	} {
		hl := v.hl
		b.Run(v.name, func(b *testing.B) {
			model := DefaultRewardModel()
			model.Decay.HalfLife = hl
			s, err := NewScorer(ScorerConfig{Brokers: []string{"unused:9092"}, CacheBytes: 1 << 30, CacheMaxAge: time.Hour, Model: model,
				Priors: v.priors}, cachedOnly{}, nil, discardWriter{})
			if err != nil {
				b.Fatal(err)
			}
			fetched := time.Now().Add(-500 * time.Millisecond)
			entries := make([]armcache.Entry, benchArms)
			for i := range entries {
				c := benchCounts(i)
				if hl > 0 { // as if the counts came over about a day
					for j, n := range c.ByType {
						c.Decayed[j] = float64(n) / 4
					}
					c.LastEventMs = fetched.Add(-time.Hour).UnixMilli()
				}
				entries[i] = armcache.Entry{Context: "home", Item: benchItem(i), Arm: model.Posterior(c, nil, fetched.UnixMilli())}
			}
			s.cache.Put(entries, fetched.UnixNano())
			runtime.GC()
			w := newScoreWorker(s, 0)
			ctx := context.Background()
			// The steady state: the worker's buffers grown by a first batch.
			if err := w.process(ctx, ctx, batch); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			mallocs := startMallocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := w.process(ctx, ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(perOp*float64(b.N)), "ns/candidate")
			mallocs.report(b)
			if st := s.Stats(); st.CacheMisses != 0 || st.Scored != int64((b.N+1)*benchBatch) {
				b.Fatalf("stats %+v: every arm must be cached and every request scored", st)
			}
		})
	}
}

// mallocCount reports a benchmark's heap allocations per request.
type mallocCount uint64

func startMallocs() mallocCount {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return mallocCount(m.Mallocs)
}

func (c mallocCount) report(b *testing.B) {
	b.StopTimer()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(m.Mallocs-uint64(c))/float64(b.N*benchBatch), "allocs/request")
}

// cachedOnly is the arm reader of a benchmark whose arms are all cached: a
// read would mean the benchmark measures something else.
type cachedOnly struct{}

func (cachedOnly) Counts(context.Context, []state.Arm) ([]state.Counts, error) {
	panic("the benchmark's arms are all cached")
}
