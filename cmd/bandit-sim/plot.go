package main

import (
	"fmt"
	"image/color"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// smoothing is the window, in seconds, of the click-through-rate curves.
const smoothing = 5

var (
	colThompson = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colRandom   = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colOracle   = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
)

// runColors are the lines of the runs compared, this run's last.
var runColors = []color.RGBA{
	{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, {R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, {R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff}, {R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
}

// plotRun draws the click-through rate per impression over time (expected,
// from the hidden rates, of the items each policy shows on the same
// requests) and the cumulative regret, into a PNG at path; with runs to
// compare (this one among them), a third panel of their cumulative regret.
func plotRun(path string, w *world, series []point, runs []savedRun) error {
	ctr := plot.New()
	ctr.Title.Text = fmt.Sprintf("Click-through rate (%d-s window), %d items, top %d", smoothing, len(w.items), w.k)
	ctr.X.Label.Text = "seconds"
	ctr.Y.Label.Text = "expected clicks per impression"
	ctr.Y.Min = 0
	regret := plot.New()
	regret.Title.Text = "Cumulative regret (expected clicks lost to the best ranking)"
	regret.X.Label.Text = "seconds"
	regret.Y.Label.Text = "clicks"
	regret.Y.Min = 0

	rate := func(pick func(point) float64) plotter.XYs {
		var xys plotter.XYs
		for i := range series {
			var clicks float64
			var shown int
			for j := max(0, i-smoothing+1); j <= i; j++ {
				clicks += pick(series[j])
				shown += series[j].answered * w.k
			}
			if shown > 0 {
				xys = append(xys, plotter.XY{X: series[i].t, Y: clicks / float64(shown)})
			}
		}
		return xys
	}
	cumulative := func(pick func(point) float64) plotter.XYs {
		xys := plotter.XYs{{X: 0, Y: 0}}
		for _, p := range series {
			xys = append(xys, plotter.XY{X: p.t, Y: pick(p)})
		}
		return xys
	}
	lines := []struct {
		p     *plot.Plot
		name  string
		col   color.RGBA
		xys   plotter.XYs
		dash  bool
		width vg.Length
	}{
		{ctr, "Thompson sampling (the pipeline)", colThompson, rate(func(p point) float64 { return p.expectedClicks }), false, 2},
		{ctr, "uniform random", colRandom, rate(func(p point) float64 { return p.uniformClicks }), true, 1.5},
		{ctr, "oracle (best k)", colOracle, rate(func(p point) float64 { return p.oracleClicks }), true, 1.5},
		{regret, "Thompson sampling (the pipeline)", colThompson, cumulative(func(p point) float64 { return p.regret }), false, 2},
		{regret, "uniform random", colRandom, cumulative(func(p point) float64 { return p.uniformRegret }), true, 1.5},
	}
	for _, l := range lines {
		if len(l.xys) == 0 {
			continue
		}
		line, err := plotter.NewLine(l.xys)
		if err != nil {
			return err
		}
		line.Color = l.col
		line.Width = vg.Points(float64(l.width))
		if l.dash {
			line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		}
		l.p.Add(line)
		l.p.Legend.Add(l.name, line)
	}
	// Empty corners: under the curves on the right for the rates, above
	// them on the left for the regret.
	ctr.Legend.Top, ctr.Legend.Left = false, false
	regret.Legend.Top, regret.Legend.Left = true, true
	for _, p := range []*plot.Plot{ctr, regret} {
		p.Legend.Padding = vg.Points(4)
		p.Add(plotter.NewGrid())
	}

	panels := [][]*plot.Plot{{ctr}, {regret}}
	if len(runs) > 1 {
		cmp, err := comparePanel(runs)
		if err != nil {
			return err
		}
		panels = append(panels, []*plot.Plot{cmp})
	}
	img := vgimg.New(vg.Points(900), vg.Points(450*float64(len(panels))))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(12), PadBottom: vg.Points(12), PadLeft: vg.Points(12), PadRight: vg.Points(18), PadY: vg.Points(24)}
	canvases := plot.Align(panels, tiles, dc)
	for i, row := range panels {
		row[0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// comparePanel draws each run's cumulative regret, on the same requests'
// scale: runs of one scenario and seed differ by the pipeline's settings.
func comparePanel(runs []savedRun) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Cumulative regret by configuration (scenario " + runs[len(runs)-1].Scenario + ")"
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "clicks"
	p.Y.Min = 0
	for i, r := range runs {
		xys := plotter.XYs{{X: 0, Y: 0}}
		for _, pt := range r.Points {
			xys = append(xys, plotter.XY{X: pt.T, Y: pt.Regret})
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		line.Color = runColors[i%len(runColors)]
		line.Width = vg.Points(2)
		p.Add(line)
		p.Legend.Add(r.Label, line)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.Padding = vg.Points(4)
	p.Add(plotter.NewGrid())
	return p, nil
}

// summarize is the text summary of a run.
func summarize(w *world, series []point, png string) string {
	t := totals(series)
	last := series[len(series)-1]
	shown := float64(t.answered * w.k)
	pct := func(x float64) float64 {
		if shown == 0 {
			return 0
		}
		return 100 * x / shown
	}
	observed := 0.0
	if t.impressions > 0 {
		observed = 100 * float64(t.clicks) / float64(t.impressions)
	}
	q := max(1, len(series)/4)
	ratio := 0.0
	if last.uniformRegret > 0 {
		ratio = last.regret / last.uniformRegret
	}
	var b strings.Builder
	fmt.Fprintf(&b, "== summary ==\n")
	fmt.Fprintf(&b, "%.0f s: %d score requests answered (%.0f/s), %d events sent; %d items in %d contexts, top %d shown\n",
		last.t, t.answered, float64(t.answered)/max(last.t, 1), t.events, len(w.items), len(w.contexts), w.k)
	fmt.Fprintf(&b, "click-through rate: pipeline %.2f%% observed (%.2f%% expected); uniform random %.2f%%; oracle %.2f%%\n",
		observed, pct(t.expected), pct(t.uniform), pct(t.oracle))
	fmt.Fprintf(&b, "cumulative regret: pipeline %.1f clicks, uniform random %.1f clicks (%.2f of random's)\n",
		last.regret, last.uniformRegret, ratio)
	fmt.Fprintf(&b, "best item ranked first: %.0f%% of rankings in the first quarter of the run, %.0f%% in the last\n",
		100*bestShare(series, 0, q), 100*bestShare(series, len(series)-q, len(series)))
	fmt.Fprintf(&b, "sessions: %d users hot at the end, %d offloads to the cold tier, %d reloads\n",
		last.hotUsers, last.offloads, last.reloads)
	fmt.Fprintf(&b, "dead letters: %d (%d malformed events sent on purpose)\n", last.deadLetters, last.badSent)
	fmt.Fprintf(&b, "picture: %s\n", png)
	return b.String()
}
