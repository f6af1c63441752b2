package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/chaos"
	"github.com/faultline-dev/faultline/reports/gate"
)

// gateCmd is `faultline gate`: compare a run against a baseline.
func gateCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("gate", "faultline gate --baseline FILE [--tolerance p99=+25%,throughput=-15%] [--ops cycle] [--expected FILE] RESULTS\n\n"+
		"Exit 0 pass, 1 regression or a safety violation not allowed, 2 bad input (unreadable file, another schema,\n"+
		"nothing to compare, implementations that differ between baseline and results).", stderr)
	baseline := fs.String("baseline", "bench/baseline.json", "baseline results.json")
	tolerance := fs.String("tolerance", "", "limits per stat (default "+gate.DefaultTolerance().String()+")")
	opsFlag := fs.String("ops", "", "operation kinds to gate, comma separated (default: every kind in the baseline; others are shown, not gated)")
	expected := fs.String("expected", "", "expected-verdict matrix deciding which safety violations are allowed\n"+
		"(default "+defaultExpected+" when present; \"none\": only mutants may violate)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "faultline gate: give one RESULTS file (a results.json, or a run directory)")
		return exitUsage
	}
	tol, err := gate.ParseTolerance(*tolerance)
	if err != nil {
		fmt.Fprintf(stderr, "faultline gate: %v\n", err)
		return exitUsage
	}
	base, err := results.Load(*baseline)
	if err != nil {
		fmt.Fprintf(stderr, "faultline gate: baseline: %v\n", err)
		return exitUsage
	}
	now, err := results.Load(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "faultline gate: %v\n", err)
		return exitUsage
	}
	allowed, matrix, err := gateAllowed(*expected, now)
	if err != nil {
		fmt.Fprintf(stderr, "faultline gate: %v\n", err)
		return exitUsage
	}
	var ops []string
	for _, o := range strings.Split(*opsFlag, ",") {
		if o = strings.TrimSpace(o); o != "" {
			ops = append(ops, o)
		}
	}
	rep, err := gate.GateOps(base, now, tol, allowed, ops)
	if err != nil {
		fmt.Fprintf(stderr, "faultline gate: %v\n", err)
		return exitUsage
	}
	if matrix != "" {
		fmt.Fprintf(stdout, "safety: violations allowed by the expected-verdict matrix %s\n", matrix)
	} else {
		fmt.Fprintln(stdout, "safety: no expected-verdict matrix: only mutants may violate")
	}
	_ = rep.WriteTable(stdout)
	if !rep.Pass() {
		return exitFail
	}
	return exitOK
}

// defaultExpected is the expected-verdict matrix the gate reads when
// --expected is not given and the file exists (run from the repository).
const defaultExpected = "chaos/expected.md"

// gateAllowed loads the expected-verdict matrix named by flag ("" = the
// default when present, "none" = none) and returns the gate's allowed
// function (nil: mutants only) and the matrix path used.
func gateAllowed(flag string, cur *results.Results) (func(impl, checker string) bool, string, error) {
	path := flag
	switch flag {
	case "none":
		return nil, "", nil
	case "":
		if _, err := os.Stat(defaultExpected); err != nil {
			return nil, "", nil
		}
		path = defaultExpected
	}
	m, err := chaos.LoadExpected(path)
	if err != nil {
		return nil, "", fmt.Errorf("%w (give --expected FILE, or --expected none for the mutants-only rule)", err)
	}
	rows := make([]gate.Expectation, 0, len(m.Rows))
	for _, r := range m.Rows {
		// A scripted interleaving forces what a fault would: not a no-fault row.
		e := gate.Expectation{Impl: r.Impl, Workload: r.Workload, NoFault: !r.Scripted() && len(r.Specs()) == 0, Faults: r.FaultKinds()}
		if r.Settings()["standby"] != "" {
			e.Topology = "pg-standby"
		}
		if r.Expect != chaos.Safe {
			e.Failing = r.Checkers
		}
		rows = append(rows, e)
	}
	return gate.MatrixAllowed(rows, cur), path, nil
}
