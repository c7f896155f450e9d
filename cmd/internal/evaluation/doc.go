// Package evaluation is what bandit evaluate and bandit-sim share of
// off-policy evaluation: reading a decision log and the interactions that
// followed from Kafka, attributing the rewards, and naming policies.
//
//	[decisions] + [interactions] → evaluation → sampler/ope
package evaluation
