package store

import "github.com/banditstream/banditstream/schemas"

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

// countFields are the hash fields of the counts, by TypeIndex.
var countFields = [NumEventTypes]string{"i", "c", "w", "a", "o"}

// Counts are an arm's event counts by type, and the time of its latest
// event (Unix ms). Trials and reward follow from them and the weights.
type Counts struct {
	ByType      [NumEventTypes]int64
	LastEventMs int64
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	for i := range c.ByType {
		c.ByType[i] += o.ByType[i]
	}
	c.LastEventMs = max(c.LastEventMs, o.LastEventMs)
}

// Impressions returns the number of trials.
func (c Counts) Impressions() int64 { return c.ByType[0] }

// ArmDelta is what a batch adds to one arm.
type ArmDelta struct {
	Arm    Arm
	Counts Counts
}
