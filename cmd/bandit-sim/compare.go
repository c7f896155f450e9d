package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// savedRun is what a run leaves in its folder (series.json) for later
// runs to compare with: its label and scenario, and its cumulative figures
// second by second.
type savedRun struct {
	Label    string       `json:"label"`
	Scenario string       `json:"scenario"`
	Seed     uint64       `json:"seed"`
	Items    int          `json:"items_at_end"`
	Initial  int          `json:"items_at_start"`
	Points   []savedPoint `json:"points"`
}

type savedPoint struct {
	T             float64 `json:"t"`
	Regret        float64 `json:"regret"`
	UniformRegret float64 `json:"uniform_regret"`
	NewRegret     float64 `json:"new_item_regret"`
	NewShown      int     `json:"new_item_slots"`
	BestTop1      int     `json:"best_first"`
	Top1          int     `json:"rankings"`
}

func newSavedRun(label string, o *options, w *world, series []point) savedRun {
	r := savedRun{Label: label, Scenario: o.scenario, Seed: o.seed, Items: len(w.items), Initial: w.initial}
	for _, p := range series {
		r.Points = append(r.Points, savedPoint{T: p.t, Regret: p.regret, UniformRegret: p.uniformRegret,
			NewRegret: p.newRegret, NewShown: p.newShown, BestTop1: p.bestTop1, Top1: p.top1})
	}
	return r
}

func (r savedRun) save(dir string) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "series.json"), b, 0o644)
}

func loadRun(dir string) (savedRun, error) {
	var r savedRun
	b, err := os.ReadFile(filepath.Join(dir, "series.json"))
	if err != nil {
		return r, fmt.Errorf("-compare: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("-compare: reading %s/series.json: %w", dir, err)
	}
	if len(r.Points) == 0 {
		return r, fmt.Errorf("-compare: %s/series.json holds no run", dir)
	}
	return r, nil
}

// last returns the run's final cumulative figures.
func (r savedRun) last() savedPoint { return r.Points[len(r.Points)-1] }

// bestShareFrom is the share of rankings with the best item first from
// second from on.
func (r savedRun) bestShareFrom(from float64) float64 {
	var best, all int
	for _, p := range r.Points {
		if p.T > from {
			best += p.BestTop1
			all += p.Top1
		}
	}
	if all == 0 {
		return 0
	}
	return float64(best) / float64(all)
}

// regretAt is the cumulative regret at second t (of the last point not
// after it).
func (r savedRun) regretAt(t float64) float64 {
	var at float64
	for _, p := range r.Points {
		if p.T > t {
			break
		}
		at = p.Regret
	}
	return at
}

type compareArg struct{ label, dir string }

// parseCompare reads -compare: label=folder, comma separated.
func parseCompare(s string) ([]compareArg, error) {
	var out []compareArg
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		label, dir, ok := strings.Cut(part, "=")
		if !ok || label == "" || dir == "" {
			return nil, fmt.Errorf("-compare: %q is not label=folder", part)
		}
		out = append(out, compareArg{label, dir})
	}
	return out, nil
}

// parseLevels reads -context-levels: positive factors, comma separated.
func parseLevels(s string) ([]float64, error) {
	var out []float64
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		x, err := strconv.ParseFloat(part, 64)
		if err != nil || !(x > 0) || x > 20 {
			return nil, fmt.Errorf("-context-levels: %q is not a factor in (0, 20]", part)
		}
		out = append(out, x)
	}
	return out, nil
}

// compareSummary is the summary's part on the scenario and on the runs
// compared (the last being this one).
func compareSummary(o *options, runs []savedRun) string {
	var b strings.Builder
	this := runs[len(runs)-1]
	switch o.scenario {
	case scenarioDrift:
		fmt.Fprintf(&b, "drift: the best items switched at %.0f s\n", o.duration.Seconds()/2)
	case scenarioNewItems:
		fmt.Fprintf(&b, "new items: %d joined the %d at the start\n", this.Items-this.Initial, this.Initial)
	}
	if len(runs) < 2 && o.scenario == scenarioSteady {
		return b.String()
	}
	fmt.Fprintf(&b, "%-24s %8s %11s %15s %21s %30s\n", "run", "regret", "of random's", "2nd half regret", "best first, 2nd half", "new items' first slots: regret")
	for _, r := range runs {
		l := r.last()
		ratio := 0.0
		if l.UniformRegret > 0 {
			ratio = l.Regret / l.UniformRegret
		}
		newItems := "-"
		if l.NewShown > 0 {
			newItems = fmt.Sprintf("%.2f in %d (%.4f each)", l.NewRegret, l.NewShown, l.NewRegret/float64(l.NewShown))
		}
		fmt.Fprintf(&b, "%-24s %8.1f %11.2f %15.1f %20.0f%% %30s\n", r.Label, l.Regret, ratio, l.Regret-r.regretAt(l.T/2),
			100*r.bestShareFrom(l.T/2), newItems)
	}
	return b.String()
}
