package sampler_test

import (
	"fmt"

	"github.com/banditstream/banditstream/sampler"
)

// Rank three items by Thompson sampling with a fixed seed, then by
// posterior mean.
func ExampleRanker() {
	prior := sampler.DefaultPrior
	arms := []sampler.Arm{
		prior.Arm(1000, 12), // item 0: 12 clicks in 1000 impressions
		prior.Arm(1000, 95), // item 1
		prior.Arm(1000, 40), // item 2
	}
	var rk sampler.Ranker
	for _, r := range rk.Rank(arms, 2, sampler.Thompson, 42, nil) {
		fmt.Printf("thompson: item %d\n", r.Index)
	}
	for _, r := range rk.Rank(arms, 3, sampler.Mean, 0, nil) {
		fmt.Printf("mean: item %d %.4f\n", r.Index, r.Score)
	}
	// Output:
	// thompson: item 1
	// thompson: item 2
	// mean: item 1 0.0958
	// mean: item 2 0.0409
	// mean: item 0 0.0130
}
