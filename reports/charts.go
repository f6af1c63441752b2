package reports

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"regexp"
	"strconv"
	"strings"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
)

// Chart sizes in points (1pt = 4/3 CSS px); the page scales them to width.
const (
	chartW     = 720
	chartH     = 290
	timelineH  = 400
	pctW       = 470
	pctH       = 290
	sansFamily = "Liberation"
)

func rgb(hex uint32) color.RGBA {
	return color.RGBA{R: uint8(hex >> 16), G: uint8(hex >> 8), B: uint8(hex), A: 255}
}

func withAlpha(c color.RGBA, a float64) color.RGBA {
	// vgsvg writes fill-opacity from a premultiplied colour.
	return color.RGBA{R: uint8(float64(c.R) * a), G: uint8(float64(c.G) * a), B: uint8(float64(c.B) * a), A: uint8(255 * a)}
}

// palette is Tableau 10: distinct, colour-blind tolerant, calm.
var palette = []color.RGBA{
	rgb(0x4E79A7), rgb(0xF28E2B), rgb(0x59A14F), rgb(0xB07AA1), rgb(0x76B7B2),
	rgb(0xEDC948), rgb(0xFF9DA7), rgb(0x9C755F), rgb(0xE15759), rgb(0xBAB0AC),
}

func colorAt(i int) color.RGBA { return palette[i%len(palette)] }

// Outcome colours, as in Jepsen's latency plots: ok blue, info amber, fail red.
var (
	colOK    = rgb(0x4E79A7)
	colInfo  = rgb(0xF28E2B)
	colFail  = rgb(0xD62728)
	colInk   = rgb(0x24292F)
	colMuted = rgb(0x57606A)
	colGrid  = rgb(0xE6E8EB)
)

// faultColor is the shade of a fault window, by fault kind.
func faultColor(kind string) color.RGBA {
	switch kind {
	case "kill", "crash", "restart":
		return rgb(0xD62728)
	case "pause", "stop", "client-pause", "gc":
		return rgb(0x9467BD)
	case "partition", "isolate", "cut", "drop", "down":
		return rgb(0x17BECF)
	case "latency", "slow", "jitter", "bandwidth":
		return rgb(0xBCBD22)
	}
	return rgb(0x8C8C8C)
}

func sans(size vg.Length) font.Font {
	return font.Font{Typeface: sansFamily, Variant: "Sans", Size: size}
}

// newPlot returns a plot styled for the page: sans-serif text, muted axes,
// light grid.
func newPlot() *plot.Plot {
	p := plot.New()
	p.BackgroundColor = color.White
	for _, ax := range []*plot.Axis{&p.X, &p.Y} {
		ax.Label.TextStyle.Font = sans(10)
		ax.Label.TextStyle.Color = colInk
		ax.Tick.Label.Font = sans(9)
		ax.Tick.Label.Color = colMuted
		ax.Color = colMuted
		ax.Tick.Color = colMuted
		ax.LineStyle.Color = colMuted
		ax.LineStyle.Width = 0.6
		ax.Tick.LineStyle.Color = colMuted
		ax.Tick.LineStyle.Width = 0.6
		ax.Padding = 2
	}
	p.Title.TextStyle.Font = sans(11)
	p.Legend.TextStyle.Font = sans(9)
	p.Legend.TextStyle.Color = colInk
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = 6
	p.Legend.YOffs = -4
	p.Legend.Padding = 1
	p.Legend.ThumbnailWidth = 14
	g := plotter.NewGrid()
	g.Vertical.Color, g.Horizontal.Color = colGrid, colGrid
	g.Vertical.Width, g.Horizontal.Width = 0.5, 0.5
	p.Add(g)
	return p
}

// svgRe* clean gonum's SVG for inline HTML5: no XML prolog, no xmlns (the
// page must not contain any URL), CSS-sizable, fonts with fallbacks.
var (
	svgProlog = regexp.MustCompile(`(?s)^<\?xml[^>]*\?>\s*(<!--.*?-->\s*)?`)
	svgHead   = regexp.MustCompile(`(?s)<svg width="([0-9.]+)pt" height="([0-9.]+)pt" viewBox="([^"]*)"\s*xmlns="[^"]*"\s*xmlns:xlink="[^"]*">`)
	svgFont   = regexp.MustCompile(`font-family:Liberation Sans;`)
)

func cleanSVG(b []byte, label string) template.HTML {
	s := svgProlog.ReplaceAllString(string(b), "")
	s = svgHead.ReplaceAllStringFunc(s, func(m string) string {
		g := svgHead.FindStringSubmatch(m)
		w, _ := strconv.ParseFloat(g[1], 64)
		h, _ := strconv.ParseFloat(g[2], 64)
		return fmt.Sprintf(`<svg class="chart" role="img" aria-label="%s" width="%.0f" height="%.0f" viewBox="%s">`,
			template.HTMLEscapeString(label), w*4/3, h*4/3, g[3])
	})
	s = svgFont.ReplaceAllString(s, `font-family:'Liberation Sans',Arimo,Arial,Helvetica,sans-serif;`)
	// Belt and braces: nothing URL-like may survive.
	s = strings.ReplaceAll(s, "http://", "")
	s = strings.ReplaceAll(s, "https://", "")
	return template.HTML(s)
}

// render draws plots stacked vertically on one SVG canvas, their data areas
// aligned on the same x, with heights in the given proportions.
func render(label string, w, h vg.Length, plots []*plot.Plot, weights []float64) (template.HTML, error) {
	c := vgsvg.New(w, h)
	dc := draw.New(c)
	var total float64
	for _, wt := range weights {
		total += wt
	}
	subs := make([]draw.Canvas, len(plots))
	top := dc.Max.Y
	for i := range plots {
		hh := vg.Length(float64(h) * weights[i] / total)
		subs[i] = draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: vg.Point{X: dc.Min.X, Y: top - hh}, Max: vg.Point{X: dc.Max.X, Y: top}}}
		top -= hh
	}
	// Align the data areas: the widest left/right padding wins.
	var left, right vg.Length
	for i, p := range plots {
		da := p.DataCanvas(subs[i])
		left = max(left, da.Min.X-subs[i].Min.X)
		right = max(right, subs[i].Max.X-da.Max.X)
	}
	for i, p := range plots {
		da := p.DataCanvas(subs[i])
		c := draw.Crop(subs[i], left-(da.Min.X-subs[i].Min.X), -(right - (subs[i].Max.X - da.Max.X)), 0, 0)
		p.Draw(c)
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return "", fmt.Errorf("write chart %q: %w", label, err)
	}
	return cleanSVG(buf.Bytes(), label), nil
}

func render1(label string, p *plot.Plot, w, h vg.Length) (template.HTML, error) {
	return render(label, w, h, []*plot.Plot{p}, []float64{1})
}

// ---- axes ------------------------------------------------------------------

// durTicks labels a log axis of milliseconds at 1-2-5 steps (or decades when
// the range is wide) as 50µs, 1ms, 2s….
type durTicks struct{}

func (durTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 {
		lo = 1e-3
	}
	steps := []float64{1, 2, 5}
	if math.Log10(hi/lo) > 3 {
		steps = []float64{1}
	}
	var ticks []plot.Tick
	for d := math.Floor(math.Log10(lo)); d <= math.Ceil(math.Log10(hi)); d++ {
		base := math.Pow(10, d)
		for m := 1; m < 10; m++ {
			v := base * float64(m)
			if v < lo*0.999 || v > hi*1.001 {
				continue
			}
			t := plot.Tick{Value: v}
			for _, s := range steps {
				if float64(m) == s {
					t.Label = tickDur(v)
				}
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// tickDur prints a round number of milliseconds as 50µs, 1ms, 200ms, 2s.
func tickDur(ms float64) string {
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', 4, 64) }
	switch {
	case ms >= 1000:
		return g(ms/1000) + "s"
	case ms >= 1:
		return g(ms) + "ms"
	}
	return g(ms*1000) + "µs"
}

// secTicks labels a time axis in seconds with round steps.
type secTicks struct{ hideLabels bool }

func (st secTicks) Ticks(lo, hi float64) []plot.Tick {
	span := hi - lo
	if span <= 0 {
		return []plot.Tick{{Value: lo, Label: fmtSec(lo)}}
	}
	step := niceStep(span / 8)
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		t := plot.Tick{Value: v, Label: fmtSec(v)}
		if st.hideLabels {
			t.Label = " " // keeps the major tick length
		}
		ticks = append(ticks, t)
		for m := 1; m < 5; m++ {
			if mv := v + step*float64(m)/5; mv <= hi {
				ticks = append(ticks, plot.Tick{Value: mv})
			}
		}
	}
	return ticks
}

func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtSec(v float64) string {
	if math.Abs(v) < 1e-9 {
		return "0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + "s"
}

// ---- percentile distribution ---------------------------------------------

// quantileTicks label the 1/(1−q) axis as HdrHistogram's plotter does.
var quantileTicks = plot.ConstantTicks{
	{Value: 1, Label: "0%"}, {Value: 2, Label: "50%"}, {Value: 10, Label: "90%"},
	{Value: 100, Label: "99%"}, {Value: 1e3, Label: "99.9%"}, {Value: 1e4, Label: "99.99%"},
	{Value: 1e5, Label: "99.999%"},
}

// quantileCurve returns (1/(1−q), latency ms) points of an operation kind,
// from its HdrHistogram when present, else from its summary percentiles.
// Points stop where the sample runs out of resolution (1/(1−q) > n).
func quantileCurve(st results.OpStats) plotter.XYs {
	n := float64(st.Count)
	if hs := st.Histogram; hs != nil && len(hs.Counts) > 0 && hs.SignificantFigures >= 1 && hs.SignificantFigures <= 5 &&
		hs.HighestTrackableValue <= 1<<40 && hs.HighestTrackableValue >= 2*max(hs.LowestTrackableValue, 1) {
		// (a geometry the recorder could have written; anything else is
		// drawn from the summary percentiles)
		h := hdr.Import(&hdr.Snapshot{
			LowestTrackableValue: st.Histogram.LowestTrackableValue, HighestTrackableValue: st.Histogram.HighestTrackableValue,
			SignificantFigures: st.Histogram.SignificantFigures, Counts: st.Histogram.Counts,
		})
		if tc := float64(h.TotalCount()); tc > 0 {
			n = tc
			var xys plotter.XYs
			limit := min(1e5, n)
			for k := 0; ; k++ {
				x := math.Pow(10, float64(k)/25)
				if x > limit {
					break
				}
				q := 1 - 1/x
				xys = append(xys, plotter.XY{X: x, Y: float64(h.ValueAtQuantile(q*100)) / 1000})
			}
			xys = append(xys, plotter.XY{X: max(limit, 1.0001), Y: float64(h.Max()) / 1000})
			return xys
		}
	}
	if st.Percentiles.Count > 0 {
		n = float64(st.Percentiles.Count)
	}
	var xys plotter.XYs
	for _, p := range []struct{ x, v float64 }{{2, st.P50}, {10, st.P90}, {100, st.P99}, {1000, st.P999}} {
		if p.v > 0 && p.x <= max(n, 2) {
			xys = append(xys, plotter.XY{X: p.x, Y: p.v / 1000})
		}
	}
	if st.Max > 0 {
		xys = append(xys, plotter.XY{X: max(min(n, 1e5), xys0(xys)*1.5), Y: st.Max / 1000})
	}
	return xys
}

func xys0(xys plotter.XYs) float64 {
	if len(xys) == 0 {
		return 2
	}
	return xys[len(xys)-1].X
}

// series is one line of a chart.
type series struct {
	Label  string
	Color  color.RGBA
	Dashed bool
	XYs    plotter.XYs
}

// percentileChart draws the latency distributions of one operation kind,
// one line per series, on the log 1/(1−q) axis.
func percentileChart(label string, ss []series) (template.HTML, error) {
	p := newPlot()
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = quantileTicks
	p.X.Min, p.X.Max = 1, 1e5
	lo, hi := math.Inf(1), 0.0
	for _, s := range ss {
		for _, xy := range s.XYs {
			if xy.Y > 0 {
				lo, hi = min(lo, xy.Y), max(hi, xy.Y)
			}
		}
	}
	if hi == 0 {
		return "", nil
	}
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = durTicks{}
	p.Y.Min, p.Y.Max = lo/1.3, hi*1.3
	// Percentile curves rise to the right: the bottom right is empty.
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs, p.Legend.YOffs = -6, 6
	for _, s := range ss {
		xys := make(plotter.XYs, 0, len(s.XYs))
		for _, xy := range s.XYs {
			if xy.Y > 0 {
				xys = append(xys, xy)
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return "", fmt.Errorf("chart %s: %w", label, err)
		}
		l.Color, l.Width = s.Color, 1.8
		if s.Dashed {
			l.Dashes = []vg.Length{5, 3}
		}
		p.Add(l)
		p.Legend.Add(s.Label, l)
	}
	return render1(label, p, pctW, pctH)
}

// ---- latency over time -----------------------------------------------------

// faultBands shades fault windows over the whole height of a plot and
// labels them along the top. It does not change the data range.
type faultBands struct {
	windows []results.FaultWindow
	labels  bool
}

func (b faultBands) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	lab := draw.TextStyle{Color: colInk, Font: sans(8), XAlign: draw.XLeft, YAlign: draw.YTop, Handler: p.TextHandler}
	for i, w := range b.windows {
		s, e := float64(w.Start)/1e9, float64(w.End)/1e9
		if e < p.X.Min || s > p.X.Max {
			continue
		}
		x0, x1 := trX(max(s, p.X.Min)), trX(min(e, p.X.Max))
		if x1-x0 < 1 {
			x1 = x0 + 1
		}
		col := faultColor(w.Kind)
		c.SetColor(withAlpha(col, 0.13))
		c.Fill(vg.Rectangle{Min: vg.Point{X: x0, Y: c.Min.Y}, Max: vg.Point{X: x1, Y: c.Max.Y}}.Path())
		edge := draw.LineStyle{Color: withAlpha(col, 0.55), Width: 0.6}
		c.StrokeLine2(edge, x0, c.Min.Y, x0, c.Max.Y)
		c.StrokeLine2(edge, x1, c.Min.Y, x1, c.Max.Y)
		if b.labels {
			lab.Color = darken(col)
			c.FillText(lab, vg.Point{X: x0 + 2, Y: c.Max.Y - 2 - vg.Length(i%3)*10}, w.Fault)
		}
	}
}

func darken(c color.RGBA) color.RGBA {
	return color.RGBA{R: c.R / 2, G: c.G / 2, B: c.B / 2, A: 255}
}

// timelineChart draws one implementation's latency over time (a dot per
// operation, coloured by outcome, log y) above its throughput (ok/s per
// operation kind and errors/s), on the same time axis, with every fault
// window shaded and labelled.
func timelineChart(label string, it *ImplTrace, ir *results.ImplResult, faults []results.FaultWindow, w, h vg.Length) (template.HTML, error) {
	x0, x1 := float64(it.MinT)/1e9, float64(it.MaxT)/1e9
	if ir != nil && ir.End > ir.Start {
		x0, x1 = math.Min(x0, float64(ir.Start)/1e9), math.Max(x1, float64(ir.End)/1e9)
	}
	if x1 <= x0 {
		x1 = x0 + 1
	}
	lat := newPlot()
	lat.Add(faultBands{windows: faults, labels: true})
	lat.Y.Label.Text = "latency"
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = durTicks{}
	lat.X.Tick.Marker = secTicks{hideLabels: true}
	lat.X.Min, lat.X.Max = x0, x1
	lo, hi := math.Inf(1), 0.0
	byType := map[history.Type]plotter.XYs{}
	for _, pt := range it.Points {
		ms := math.Max(float64(pt.Latency)/1e6, 1e-3)
		lo, hi = min(lo, ms), max(hi, ms)
		byType[pt.Type] = append(byType[pt.Type], plotter.XY{X: float64(pt.T) / 1e9, Y: ms})
	}
	if hi == 0 {
		lo, hi = 0.1, 1
	}
	lat.Y.Min, lat.Y.Max = lo/1.5, hi*2.2 // headroom for fault labels
	for _, o := range []struct {
		t   history.Type
		col color.RGBA
		r   vg.Length
		a   float64
	}{{history.OK, colOK, 1.1, 0.45}, {history.Info, colInfo, 1.8, 0.9}, {history.Fail, colFail, 1.8, 0.9}} {
		xys := byType[o.t]
		if len(xys) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return "", fmt.Errorf("chart %s: %w", label, err)
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: withAlpha(o.col, o.a), Radius: o.r, Shape: draw.CircleGlyph{}}
		lat.Add(sc)
		sc2 := *sc
		sc2.GlyphStyle.Radius = 2.5
		sc2.GlyphStyle.Color = o.col
		lat.Legend.Add(string(o.t), &sc2)
	}
	lat.Legend.Left = false
	lat.Legend.XOffs = -4

	// Throughput: rebin the 10 ms counts to about 120 buckets.
	tp := newPlot()
	tp.Add(faultBands{windows: faults})
	tp.X.Label.Text = "time since run start"
	tp.Y.Label.Text = "ops/s"
	tp.X.Tick.Marker = secTicks{}
	tp.X.Min, tp.X.Max = x0, x1
	width := niceBucket((x1 - x0) / 120)
	per := max(1, int(math.Round(width*1e9/float64(Bucket))))
	width = float64(per) * float64(Bucket) / 1e9
	var ymax float64
	first, last := int(x0*1e9/float64(Bucket))/per, int(x1*1e9/float64(Bucket))/per
	tMin, tMax := float64(it.MinT)/1e9, float64(it.MaxT)/1e9
	addRate := func(name string, counts []int64, col color.RGBA, dashed bool) error {
		var xys plotter.XYs
		// At most a few thousand buckets (120 for any run up to two
		// hours): a corrupt time far out must not loop for minutes.
		for b := first; b <= min(last, first+4096); b++ {
			var n int64
			for i := b * per; i < (b+1)*per && i < len(counts); i++ {
				n += counts[i]
			}
			// Divide by the part of the bucket the run covered, so the
			// first and last buckets do not dip.
			lo, hi := math.Max(float64(b)*width, tMin), math.Min(float64(b+1)*width, tMax)
			if hi-lo < width*0.2 {
				continue
			}
			rate := float64(n) / (hi - lo)
			ymax = max(ymax, rate)
			xys = append(xys, plotter.XY{X: (lo + hi) / 2, Y: rate})
		}
		if len(xys) == 0 {
			return nil
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color, l.Width = col, 1.4
		if dashed {
			l.Dashes = []vg.Length{3, 2}
		}
		tp.Add(l)
		tp.Legend.Add(name, l)
		return nil
	}
	var total []int64
	for _, k := range sortedKeys(it.OK) {
		for i, n := range it.OK[k] {
			total = grow(total, i)
			total[i] += n
		}
	}
	if err := addRate("ok ops/s", total, colOK, false); err != nil {
		return "", fmt.Errorf("chart %s: %w", label, err)
	}
	if len(it.Errors) > 0 {
		if err := addRate("fail+info ops/s", it.Errors, colFail, true); err != nil {
			return "", fmt.Errorf("chart %s: %w", label, err)
		}
	}
	tp.Y.Min, tp.Y.Max = 0, math.Max(ymax*1.15, 1)
	tp.Legend.Left = false
	tp.Legend.XOffs = -4
	return render(label, w, h, []*plot.Plot{lat, tp}, []float64{0.62, 0.38})
}

func niceBucket(raw float64) float64 {
	for _, b := range []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60} {
		if raw <= b {
			return b
		}
	}
	return 60
}

// ---- bars -----------------------------------------------------------------

// bars draws grouped bars, one group per category (x = 0, 1, …), one bar
// per series, from the bottom of the axis, so that it works on a log axis.
type bars struct {
	ss   []series
	ncat int
}

func (b *bars) width(c draw.Canvas, p *plot.Plot) (group, bar vg.Length) {
	trX, _ := p.Transforms(&c)
	spacing := trX(1) - trX(0)
	if b.ncat == 1 {
		spacing = c.Max.X - c.Min.X
	}
	bar = min(spacing*0.8/vg.Length(len(b.ss)), 34)
	return bar * vg.Length(len(b.ss)), bar
}

func (b *bars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	group, bw := b.width(c, p)
	for i, s := range b.ss {
		c.SetColor(s.Color)
		for _, xy := range s.XYs {
			if math.IsNaN(xy.Y) || xy.Y <= 0 || (p.Y.Scale == plot.LogScale{} && xy.Y < p.Y.Min) {
				continue
			}
			x := trX(xy.X) - group/2 + vg.Length(i)*bw
			y := trY(math.Min(xy.Y, p.Y.Max))
			c.Fill(vg.Rectangle{Min: vg.Point{X: x + 0.5, Y: c.Min.Y}, Max: vg.Point{X: x + bw - 0.5, Y: y}}.Path())
		}
	}
}

func (b *bars) DataRange() (xmin, xmax, ymin, ymax float64) {
	ymin, ymax = math.Inf(1), 0
	for _, s := range b.ss {
		for _, xy := range s.XYs {
			if xy.Y > 0 && !math.IsInf(xy.Y, 0) {
				ymin, ymax = min(ymin, xy.Y), max(ymax, xy.Y)
			}
		}
	}
	return -0.5, float64(b.ncat) - 0.5, ymin, ymax
}

// swatch is a legend thumbnail: a filled square.
type swatch color.RGBA

func (s swatch) Thumbnail(c *draw.Canvas) {
	c.SetColor(color.RGBA(s))
	h := c.Max.Y - c.Min.Y
	c.Fill(vg.Rectangle{Min: vg.Point{X: c.Min.X + 2, Y: c.Min.Y}, Max: vg.Point{X: c.Min.X + 2 + h, Y: c.Max.Y}}.Path())
}

// refLine is a labelled horizontal reference line (e.g. the lock TTL).
type refLine struct {
	Y     float64
	Label string
}

func (r refLine) Plot(c draw.Canvas, p *plot.Plot) {
	_, trY := p.Transforms(&c)
	if r.Y < p.Y.Min || r.Y > p.Y.Max {
		return
	}
	y := trY(r.Y)
	c.StrokeLine2(draw.LineStyle{Color: colInk, Width: 0.8, Dashes: []vg.Length{4, 3}}, c.Min.X, y, c.Max.X, y)
	c.FillText(draw.TextStyle{Color: colInk, Font: sans(8), XAlign: draw.XRight, YAlign: draw.YBottom, Handler: p.TextHandler},
		vg.Point{X: c.Max.X - 2, Y: y + 2}, r.Label)
}

// barChart draws grouped vertical bars: one group per category, one bar per
// series. Latencies go on a log axis (logY) so that a 100× tail next to a
// fast median stays readable; ref, when positive, adds a reference line.
func barChart(label, yLabel string, categories []string, ss []series, logY bool, ref refLine, w, h vg.Length) (template.HTML, error) {
	if len(categories) == 0 || len(ss) == 0 {
		return "", nil
	}
	p := newPlot()
	p.Y.Label.Text = yLabel
	b := &bars{ss: ss, ncat: len(categories)}
	p.Add(b)
	ticks := make(plot.ConstantTicks, len(categories))
	for i, c := range categories {
		ticks[i] = plot.Tick{Value: float64(i), Label: c}
	}
	p.X.Tick.Marker = ticks
	p.X.Tick.Label.Color = colInk
	p.X.Tick.Length = 0
	p.X.Tick.Label.Font = sans(8.5)
	if len(categories) > 8 {
		p.X.Tick.Label.Font = sans(7.5)
	}
	_, _, lo, hi := b.DataRange()
	if ref.Y > 0 {
		hi = max(hi, ref.Y)
		lo = min(lo, ref.Y)
		p.Add(ref)
	}
	if hi <= 0 {
		return "", nil
	}
	if logY && hi/lo > 20 {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = durTicks{}
		// headroom above the tallest bar for the legend (a log axis
		// needs a factor per legend line)
		p.Y.Min, p.Y.Max = lo/2, hi*math.Pow(2.2, float64(len(ss)))
	} else {
		p.Y.Min, p.Y.Max = 0, hi*(1.15+0.09*float64(len(ss)))
		if logY {
			p.Y.Tick.Marker = linDurTicks{}
		}
	}
	p.X.Min, p.X.Max = -0.5, float64(len(categories))-0.5
	for _, s := range ss {
		p.Legend.Add(s.Label, swatch(s.Color))
	}
	p.Legend.Left = true
	p.Legend.Top = true
	return render1(label, p, w, h)
}

// linDurTicks labels a linear axis of milliseconds with durations.
type linDurTicks struct{}

func (linDurTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = tickDur(ts[i].Value)
			if ts[i].Value == 0 {
				ts[i].Label = "0"
			}
		}
	}
	return ts
}
