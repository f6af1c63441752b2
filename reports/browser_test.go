package reports

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds a Chromium: $FAULTLINE_CHROMIUM, then the usual names.
func chromiumPath() string {
	if p := os.Getenv("FAULTLINE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

type box struct {
	ID     string  `json:"id"`
	Width  float64 `json:"w"`
	Height float64 `json:"h"`
	Shown  bool    `json:"shown"`
}

// TestReportInBrowser renders a report and opens it in headless Chromium:
// every chart must be present and visible, the page must log no error, and
// a PNG screenshot is saved to $FAULTLINE_SCREENSHOT (default: a temporary
// directory; the full page goes next to it as *-full.png).
func TestReportInBrowser(t *testing.T) {
	bin := chromiumPath()
	if bin == "" {
		t.Skip("no Chromium binary found (install the Debian package chromium via scripts/deps.sh, or set FAULTLINE_CHROMIUM)")
	}
	dir := saveFixture(t, lockFixture())
	if err := WriteHTML(dir); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	wantCharts := strings.Count(string(page), "<svg")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1360, 1500), chromedp.Flag("hide-scrollbars", true))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	tab, tcancel := chromedp.NewContext(actx)
	defer tcancel()
	if err := chromedp.Do(tab); err != nil { // start the browser
		t.Fatalf("start %s: %v", bin, err)
	}

	cctx, ccancel := context.WithCancel(tab)
	var mu sync.Mutex
	var problems []string
	var wg sync.WaitGroup
	msgs := chromedp.Console(cctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()

	url := "file://" + filepath.Join(dir, ReportFile)
	if err := chromedp.Do(tab, chromedp.Navigate(url), chromedp.WaitReady("footer")); err != nil {
		t.Fatalf("open report: %v", err)
	}
	boxes, err := chromedp.Run(tab, chromedp.Evaluate[[]box](`Array.from(document.querySelectorAll('svg')).map((s, i) => {
		const r = s.getBoundingClientRect(), cs = getComputedStyle(s);
		const fig = s.closest('figure');
		return {id: (fig && fig.id) || ('svg#' + i), w: r.width, h: r.height, shown: cs.display !== 'none' && cs.visibility !== 'hidden' && s.getClientRects().length > 0};
	})`))
	if err != nil {
		t.Fatalf("measure charts: %v", err)
	}
	if len(boxes) != wantCharts || len(boxes) < 10 {
		t.Errorf("browser sees %d charts, the HTML has %d (want >= 10)", len(boxes), wantCharts)
	}
	for _, b := range boxes {
		if !b.Shown || b.Width < 100 || b.Height < 50 {
			t.Errorf("chart %s not visible: %+v", b.ID, b)
		}
	}

	shot, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	full, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("full screenshot: %v", err)
	}
	out := os.Getenv("FAULTLINE_SCREENSHOT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "report.png")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	fullPath := strings.TrimSuffix(out, filepath.Ext(out)) + "-full.png"
	if err := os.WriteFile(fullPath, full, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d charts visible; screenshot %s (%d bytes), full page %s", len(boxes), out, len(shot), fullPath)

	ccancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("page logged: %s", p)
	}
}
