package consumers_test

import (
	"fmt"
	"image/color"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// loadFiles names where a load run keeps its charts and profiles: next to
// BANDITSTREAM_LOAD_REPORT, each named after the report (scale-single.md:
// scale-single.cpu.pprof, scale-single-throughput.png), so that runs of
// one make target do not overwrite another's; without a report, in the
// test's temporary folder under the run's own name.
func loadFiles(t *testing.T, run string) func(suffix string) string {
	dir, stem := t.TempDir(), run
	if out := os.Getenv("BANDITSTREAM_LOAD_REPORT"); out != "" {
		dir, stem = filepath.Dir(out), strings.TrimSuffix(filepath.Base(out), filepath.Ext(out))
	}
	return func(suffix string) string { return filepath.Join(dir, stem+suffix) }
}

// line is one named curve of a chart.
type line struct {
	name string
	xys  plotter.XYs
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
}

// writeChart draws lines into a PNG at path.
func writeChart(path, title, xLabel, yLabel string, lines ...line) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = xLabel, yLabel
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	p.Y.Min = 0
	for i, l := range lines {
		if len(l.xys) == 0 {
			continue
		}
		lp, sp, err := plotter.NewLinePoints(l.xys)
		if err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		lp.Color, sp.Color = palette[i%len(palette)], palette[i%len(palette)]
		lp.Width, sp.Radius = vg.Points(1.5), vg.Points(2)
		p.Add(lp, sp)
		p.Legend.Add(l.name, lp, sp)
	}
	return p.Save(vg.Points(720), vg.Points(400), path)
}

// smooth is the centred moving average of xys over window points.
func smooth(xys plotter.XYs, window int) plotter.XYs {
	out := make(plotter.XYs, len(xys))
	for i := range xys {
		lo, hi := max(0, i-window/2), min(len(xys), i+window/2+1)
		var sum float64
		for _, p := range xys[lo:hi] {
			sum += p.Y
		}
		out[i] = plotter.XY{X: xys[i].X, Y: sum / float64(hi-lo)}
	}
	return out
}

// counter reads the sum of a counter's series (every label set) from a
// daemon's /metrics.
func counter(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", l, err)
			}
			sum += v
		}
	}
	return sum, nil
}

// pprofTop is the top of a profile as text, for the report.
func pprofTop(t *testing.T, bin, profile string, extra ...string) string {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=20"}, extra...)
	out, err := exec.Command("go", append(args, bin, profile)...).CombinedOutput()
	if err != nil {
		t.Logf("pprof %s: %v\n%s", profile, err, out)
	}
	return string(out)
}
