// Package ope estimates, from a log of a bandit's decisions and the rewards
// that followed, what other ranking policies would have earned on the same
// decisions: off-policy evaluation by inverse propensity scoring (IPS),
// self-normalised IPS (SNIPS) and the doubly robust estimator (DR), with
// bootstrap confidence intervals.
//
//	[decisions] + [interactions] → bandit evaluate → ope → a table per policy
//
// Like sampler, it is pure: no I/O, and every Monte Carlo draw and bootstrap
// resample comes from a seed.
package ope
