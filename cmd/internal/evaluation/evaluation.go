package evaluation

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/sampler/ope"
	"github.com/banditstream/banditstream/schemas"
)

// Rewards holds the reward events by user, context and item, with
// their times.
type Rewards map[[3]string][]int64

// Add records a reward event.
func (r Rewards) Add(ev *schemas.Interaction) {
	key := [3]string{ev.GetUserId(), ev.GetContext(), ev.GetItemId()}
	r[key] = append(r[key], ev.GetEventTimeMs())
}

// shown is one slot of a decision showing an item to a user in a context.
type shown struct {
	atMs           int64
	decision, slot int
}

// Join turns the decisions into the estimators' log and gives each
// shown item its reward by last touch: a reward event on (user, context,
// item) goes to the latest decision that showed that item to that user in
// that context at or before the event, if within the window, so that no
// event rewards two decisions. Decisions without propensities, or with
// posteriors that are not valid Beta shapes, are left out (skipped).
func Join(decisions []*schemas.Decision, rewards Rewards, window time.Duration, slots int) ([]ope.Decision, int) {
	var log []ope.Decision
	skipped := 0
	touches := map[[3]string][]shown{}
	for _, d := range decisions {
		index := Candidates(d)
		od, ok := FromLog(d, index, slots)
		if !ok {
			skipped++
			continue
		}
		// Every item shown is a touch, in the slots evaluated or not: an
		// event after a later decision showed its item lower belongs to
		// that decision.
		for s, it := range d.GetItems() {
			key := [3]string{d.GetUserId(), d.GetContext(), it.GetItemId()}
			touches[key] = append(touches[key], shown{atMs: d.GetDecidedTimeMs(), decision: len(log), slot: s})
		}
		log = append(log, od)
	}
	for key, ts := range touches {
		slices.SortFunc(ts, func(a, b shown) int { return cmp.Compare(a.atMs, b.atMs) })
		for _, t := range rewards[key] {
			// The latest touch at or before the event.
			j, _ := slices.BinarySearchFunc(ts, t, func(s shown, t int64) int { return cmp.Compare(s.atMs, t+1) })
			if j > 0 && t-ts[j-1].atMs <= window.Milliseconds() && ts[j-1].slot < slots {
				log[ts[j-1].decision].Reward[ts[j-1].slot] = 1
			}
		}
	}
	return log, skipped
}

// Candidates maps a decision's candidates to their indexes.
func Candidates(d *schemas.Decision) map[string]int {
	index := make(map[string]int, len(d.GetCandidates()))
	for i, c := range d.GetCandidates() {
		index[c] = i
	}
	return index
}

// FromLog is a logged decision as the estimators take it, its first slots
// shown with their propensities and no rewards yet; ok is false for a
// decision they cannot use (posteriors that are not Beta shapes, no
// propensities).
func FromLog(d *schemas.Decision, index map[string]int, slots int) (ope.Decision, bool) {
	od := ope.Decision{Seed: d.GetSeed(), Prior: LoggedPrior(d.GetModelVersion()), Mode: sampler.Thompson}
	if d.GetMode() == schemas.ModeMean {
		od.Mode = sampler.Mean
	}
	ok := len(d.GetAlpha()) == len(d.GetCandidates()) && len(d.GetBeta()) == len(d.GetCandidates()) && len(d.GetItems()) > 0
	for i := 0; ok && i < len(d.GetCandidates()); i++ {
		a, err := sampler.NewArm(d.GetAlpha()[i], d.GetBeta()[i])
		ok = err == nil
		od.Arms = append(od.Arms, a)
	}
	for s, it := range d.GetItems() {
		if !ok || s == slots {
			break
		}
		i, found := index[it.GetItemId()]
		ok = found && it.GetPropensity() > 0
		od.Shown, od.Propensity, od.Reward = append(od.Shown, i), append(od.Propensity, it.GetPropensity()), append(od.Reward, 0)
	}
	return od, ok
}

var priorInVersion = regexp.MustCompile(`(?:^beta|;prior=context:beta)\(([0-9.e+-]+),([0-9.e+-]+)\)`)

// LoggedPrior reads the prior a decision's posteriors include from its
// model version: the per-context prior if named, else the global one
// (Beta(1, 1) when the version names neither, as a custom label does).
func LoggedPrior(version string) sampler.Prior {
	p := sampler.DefaultPrior
	for _, m := range priorInVersion.FindAllStringSubmatch(version, -1) {
		a, errA := strconv.ParseFloat(m[1], 64)
		b, errB := strconv.ParseFloat(m[2], 64)
		if errA == nil && errB == nil && (sampler.Prior{Alpha: a, Beta: b}).Validate() == nil {
			p = sampler.Prior{Alpha: a, Beta: b}
		}
	}
	return p
}

// Policies are the values of a repeatable -policy flag.
type Policies []ope.Policy

func (p *Policies) String() string {
	names := make([]string, len(*p))
	for i, q := range *p {
		names[i] = q.Name
	}
	return strings.Join(names, ",")
}

// Set adds the policy s names (see ParsePolicy).
func (p *Policies) Set(s string) error {
	q, err := ParsePolicy(s)
	if err != nil {
		return err
	}
	*p = append(*p, q)
	return nil
}

// DefaultPolicies are the logged policy, posterior mean and uniform.
func DefaultPolicies() Policies {
	return Policies{{Name: "logged", Kind: ope.Logged}, {Name: "mean", Kind: ope.Mean}, {Name: "uniform", Kind: ope.Uniform}}
}

// ParsePolicy reads a policy: logged, mean, uniform, or name=flags of the
// scorer (-mode thompson|mean, -prior-alpha, -prior-beta).
func ParsePolicy(s string) (ope.Policy, error) {
	switch s {
	case "logged":
		return ope.Policy{Name: s, Kind: ope.Logged}, nil
	case "mean":
		return ope.Policy{Name: s, Kind: ope.Mean}, nil
	case "uniform":
		return ope.Policy{Name: s, Kind: ope.Uniform}, nil
	}
	name, args, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return ope.Policy{}, fmt.Errorf("%q is not logged, mean, uniform or name=flags", s)
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	mode := fs.String("mode", "thompson", "")
	alpha := fs.Float64("prior-alpha", 0, "")
	beta := fs.Float64("prior-beta", 0, "")
	if err := fs.Parse(strings.Fields(args)); err != nil {
		return ope.Policy{}, fmt.Errorf("policy %s: %q: the flags are -mode thompson|mean, -prior-alpha, -prior-beta: %w", name, args, err)
	}
	if fs.NArg() > 0 {
		return ope.Policy{}, fmt.Errorf("policy %s: %q: unexpected %q", name, args, fs.Args())
	}
	q := ope.Policy{Name: strings.TrimSpace(name), Kind: ope.Thompson}
	switch *mode {
	case "thompson":
	case "mean":
		q.Kind = ope.Mean
	default:
		return ope.Policy{}, fmt.Errorf("policy %s: -mode %q is not thompson or mean", name, *mode)
	}
	if *alpha != 0 || *beta != 0 {
		prior := sampler.Prior{Alpha: *alpha, Beta: *beta}
		if err := prior.Validate(); err != nil {
			return ope.Policy{}, fmt.Errorf("policy %s: %w", name, err)
		}
		q.Prior = &prior
	}
	return q, nil
}

// Reader reads offset ranges of a topic's partitions.
type Reader struct {
	Brokers []string
	Client  *kafka.Client
	Dialer  *kafka.Dialer
}

// Plan resolves from and to into each partition's offsets.
func (r Reader) Plan(ctx context.Context, topic string, from, to consumers.Position) ([]consumers.ReplayRange, error) {
	return consumers.PlanReplay(ctx, r.Client, topic, nil, from, to)
}

// Total is the records of the ranges.
func Total(ranges []consumers.ReplayRange) int64 {
	var n int64
	for _, rg := range ranges {
		n += rg.To - rg.From
	}
	return n
}

// Read calls each with every record of the ranges, one partition after
// another, and progress with the records read.
func (r Reader) Read(ctx context.Context, topic string, ranges []consumers.ReplayRange, progress func(int), each func(kafka.Message)) error {
	for _, rg := range ranges {
		if rg.From >= rg.To {
			continue
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: r.Brokers, Topic: topic, Partition: rg.Partition, MaxWait: 200 * time.Millisecond,
			MaxBytes: 16 << 20, Dialer: r.Dialer})
		if err := rd.SetOffset(rg.From); err != nil {
			rd.Close()
			return err
		}
		for rd.Offset() < rg.To {
			m, err := rd.ReadMessage(ctx)
			if err != nil {
				rd.Close()
				return fmt.Errorf("reading %s/%d: %w", topic, rg.Partition, err)
			}
			if !rg.FromTime.IsZero() && m.Time.Before(rg.FromTime) || !rg.ToTime.IsZero() && !m.Time.Before(rg.ToTime) {
				progress(1)
				continue
			}
			each(m)
			progress(1)
		}
		rd.Close()
	}
	return nil
}

// ContentType is the value of a record's content-type header.
func ContentType(headers []kafka.Header) string {
	for _, h := range headers {
		if h.Key == schemas.HeaderContentType {
			return string(h.Value)
		}
	}
	return ""
}
