package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/reports"
)

// reportCmd is `faultline report`: re-render a saved run, or compare runs.
func reportCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("report", "faultline report DIR          re-render DIR/report.html from DIR/{results.json,history.jsonl.zst (or an older run's history.jsonl)}\n"+
		"faultline report --compare A B … [--out FILE]   compare saved runs\n\n"+
		"Exit 0 written, 1 failed to write, 2 bad input (no results.json, another schema, a corrupt history line).", stderr)
	compare := fs.Bool("compare", false, "compare the run directories given")
	out := fs.String("out", "", "comparison page (default: compare.html in the first run directory)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	dirs := fs.Args()
	if *compare {
		if len(dirs) < 2 {
			fmt.Fprintln(stderr, "faultline report --compare: give two or more run directories")
			return exitUsage
		}
		if *out == "" {
			*out = filepath.Join(dirs[0], "compare.html")
		}
		if err := reports.WriteCompare(*out, dirs); err != nil {
			fmt.Fprintf(stderr, "faultline report: %v\n", err)
			return reportExit(err)
		}
		fmt.Fprintf(stdout, "report: %s\n", *out)
		return exitOK
	}
	if len(dirs) != 1 {
		fmt.Fprintln(stderr, "faultline report: give one run directory (one that holds results.json)")
		return exitUsage
	}
	if err := reports.WriteHTML(dirs[0]); err != nil {
		fmt.Fprintf(stderr, "faultline report: %v\n", err)
		return reportExit(err)
	}
	fmt.Fprintf(stdout, "report: %s\n", filepath.Join(dirs[0], reports.ReportFile))
	return exitOK
}

// reportExit is 2 for inputs that are not a readable saved run (results
// unreadable or of another schema, a corrupt history line), 1 otherwise.
func reportExit(err error) int {
	var re *results.ReadError
	var le *history.LineError
	if errors.As(err, &re) || errors.As(err, &le) || errors.Is(err, os.ErrNotExist) {
		return exitUsage
	}
	return exitFail
}
