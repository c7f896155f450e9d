// Package sampler turns arm statistics into rankings: batch sampling of Beta
// posteriors (Thompson sampling) or posterior means, and top-k selection.
//
//	store → consumers (scorer) → sampler → ranked items
//
// It is pure: no I/O, no context, no global random source; each worker owns
// its generator, and a seed gives a reproducible ranking.
package sampler
