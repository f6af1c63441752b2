package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/faultline-dev/faultline/bench"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/reports"
)

// checkCmd is `faultline check DIR`: every checker again, offline, on the
// saved history; the verdicts in DIR/results.json are replaced and
// DIR/report.html re-rendered.
func checkCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "faultline check DIR [--fail-on-violation]\n\n"+
		"Re-runs every checker on DIR/history.jsonl.zst (or DIR/history.jsonl) (nothing is started), rewrites the verdicts in DIR/results.json\n"+
		"and re-renders DIR/report.html. Exit 0 done, 1 an invalid verdict with --fail-on-violation, 2 bad input.", stderr)
	failOn := fs.Bool("fail-on-violation", false, "exit 1 when any checker's verdict is invalid")
	dirs, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if len(dirs) != 1 {
		fmt.Fprintln(stderr, "faultline check: give one run directory (one that holds results.json and history.jsonl.zst or history.jsonl)")
		return exitUsage
	}
	dir := dirs[0]
	res, err := bench.Check(dir)
	if err != nil {
		fmt.Fprintf(stderr, "faultline check: %v\n", err)
		var ue *bench.UsageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFail
	}
	if err := reports.WriteHTML(dir); err != nil {
		fmt.Fprintf(stderr, "faultline check: report.html: %v\n", err)
		return exitFail
	}
	writeVerdicts(stdout, res)
	fmt.Fprintf(stdout, "results: %s\nreport:  %s\n", filepath.Join(dir, results.FileName), filepath.Join(dir, reports.ReportFile))
	if *failOn {
		if n := invalidVerdicts(res); n > 0 {
			fmt.Fprintf(stderr, "faultline check: %d invalid verdict(s) (--fail-on-violation)\n", n)
			return exitFail
		}
	}
	return exitOK
}

// parseInterspersed parses flags given before and after the positional
// arguments (faultline check DIR --fail-on-violation).
func parseInterspersed(fs *flag.FlagSet, args []string) (positional []string, code int, ok bool) {
	for {
		if code, ok := parse(fs, args); !ok {
			return nil, code, false
		}
		rest := fs.Args()
		for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			positional = append(positional, rest[0])
			rest = rest[1:]
		}
		if len(rest) == 0 {
			return positional, 0, true
		}
		if rest[0] == "--" {
			return append(positional, rest[1:]...), 0, true
		}
		args = rest
	}
}

// invalidVerdicts counts the verdicts that are invalid.
func invalidVerdicts(res *results.Results) int {
	n := 0
	for _, v := range res.Verdicts {
		if v.Valid == results.Invalid {
			n++
		}
	}
	return n
}

// writeVerdicts prints one line per verdict.
func writeVerdicts(w io.Writer, res *results.Results) {
	for _, v := range res.Verdicts {
		valid := map[results.Validity]string{results.Valid: "ok", results.Invalid: "INVALID", results.Unknown: "unknown"}[v.Valid]
		fmt.Fprintf(w, "%-24s %-20s %-8s %s\n", v.Impl, v.Checker, valid, v.Summary)
	}
}
