package sampler

import "math"

// Ranked is one entry of a ranking: the candidate's index and its score.
type Ranked struct {
	Index int
	Score float64
}

// before reports whether a ranks before b: higher score first, then lower
// index, so equal scores keep the candidates' order.
func before(a, b Ranked) bool {
	return a.Score > b.Score || (a.Score == b.Score && a.Index < b.Index)
}

// insertionMaxK is the largest k ranked by insertion into a sorted array;
// above it a heap moves fewer entries.
const insertionMaxK = 64

// TopK appends to dst[:0] the k best of scores, best first, and returns it:
// higher score first, equal scores in candidate order. A NaN score ranks as
// −Inf and is reported as −Inf. k ≥ len(scores) returns every index, sorted;
// k ≤ 0 returns none. With cap(dst) ≥ k it does not allocate.
//
// A candidate that does not beat the worst of the k kept costs one
// comparison; with random scores only about k·ln(n/k) candidates do.
func TopK(scores []float64, k int, dst []Ranked) []Ranked {
	k = min(k, len(scores))
	if k <= 0 {
		return dst[:0]
	}
	if k <= insertionMaxK {
		return topKInsertion(scores, k, dst[:0])
	}
	return topKHeap(scores, k, dst[:0])
}

// topKInsertion keeps the best k sorted, best first.
func topKInsertion(scores []float64, k int, h []Ranked) []Ranked {
	worst := math.Inf(-1)
	for i, s := range scores {
		// Once k are kept, most candidates stop here: NaN and ties with the
		// worst kept (which has the smaller index) fail the comparison.
		if len(h) == k && !(s > worst) {
			continue
		}
		if s != s {
			s = math.Inf(-1)
		}
		if len(h) == k {
			h = h[:k-1]
		}
		// The first kept entry with a lower score: equal scores stay ahead.
		lo, hi := 0, len(h)
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if h[mid].Score >= s {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		h = append(h, Ranked{})
		copy(h[lo+1:], h[lo:len(h)-1])
		h[lo] = Ranked{Index: i, Score: s}
		worst = h[len(h)-1].Score
	}
	return h
}

// topKHeap keeps the best k in a heap with the worst at the root, then
// sorts it.
func topKHeap(scores []float64, k int, h []Ranked) []Ranked {
	for i, s := range scores {
		if s != s {
			s = math.Inf(-1)
		}
		if len(h) < k {
			h = append(h, Ranked{Index: i, Score: s})
			siftUp(h, len(h)-1)
			continue
		}
		if s <= h[0].Score {
			continue
		}
		h[0] = Ranked{Index: i, Score: s}
		siftDown(h, 0)
	}
	// Heap sort: repeatedly move the worst to the end.
	for end := len(h) - 1; end > 0; end-- {
		h[0], h[end] = h[end], h[0]
		siftDown(h[:end], 0)
	}
	return h
}

func siftUp(h []Ranked, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !before(h[p], h[i]) {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func siftDown(h []Ranked, i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		worst := l
		if r := l + 1; r < n && before(h[l], h[r]) {
			worst = r
		}
		if !before(h[i], h[worst]) {
			return
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
}
