package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/cmd/internal/evaluation"
	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/sampler/ope"
	"github.com/banditstream/banditstream/schemas"
)

// truth is a policy's true value per decision on a run's decisions: the
// expected clicks of the item it would put first, by the hidden rates.
type truth struct {
	Policy    string
	Decisions int
	Value     float64
}

// policyTruths reads the run's decision log (each request once) and
// computes each policy's true value on it: what bandit evaluate's
// estimates of the same log should cover.
func policyTruths(ctx context.Context, o *options, client *kafka.Client, dialer *kafka.Dialer, w *world) ([]truth, error) {
	src := evaluation.Reader{Brokers: o.conns.Kafka.Brokers, Client: client, Dialer: dialer}
	ranges, err := src.Plan(ctx, o.decisions, consumers.Earliest, consumers.End)
	if err != nil {
		return nil, err
	}
	type logged struct {
		d     ope.Decision
		rates []float64 // of the decision's candidates
	}
	var log []logged
	seen := map[string]bool{}
	err = src.Read(ctx, o.decisions, ranges, func(int) {}, func(m kafka.Message) {
		d := &schemas.Decision{}
		if schemas.Protobuf.DecodeDecision(schemas.DefaultLimits(), m.Value, d) != nil || seen[d.GetRequestId()] {
			return
		}
		seen[d.GetRequestId()] = true
		od, ok := evaluation.FromLog(d, evaluation.Candidates(d), 1)
		if !ok {
			return
		}
		rates := make([]float64, len(d.GetCandidates()))
		for i, c := range d.GetCandidates() {
			if n, err := w.itemIndex(c); err == nil {
				rates[i] = w.ctr[d.GetContext()][n]
			}
		}
		log = append(log, logged{od, rates})
	})
	if err != nil {
		return nil, fmt.Errorf("reading the decisions: %w", err)
	}
	policies := o.policies
	if len(policies) == 0 {
		policies = evaluation.DefaultPolicies()
	}
	// The top slot, with bandit evaluate's default Monte Carlo draws.
	cfg := ope.DefaultConfig()
	out := make([]truth, len(policies))
	for i, p := range policies {
		var sum float64
		for _, l := range log {
			sum += ope.Value(cfg, []ope.Decision{l.d}, p, func(_ *ope.Decision, a int) float64 { return l.rates[a] })
		}
		out[i] = truth{Policy: p.Name, Decisions: len(log)}
		if len(log) > 0 {
			out[i].Value = sum / float64(len(log))
		}
	}
	return out, nil
}

func truthSummary(ts []truth) string {
	var b strings.Builder
	if len(ts) > 0 {
		fmt.Fprintf(&b, "true value per decision (expected clicks of the first slot) on the %d logged decisions:\n", ts[0].Decisions)
	}
	for _, t := range ts {
		fmt.Fprintf(&b, "  %-24s %.4f\n", t.Policy, t.Value)
	}
	return b.String()
}
