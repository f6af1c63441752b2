package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
)

// HeadlineKind is the operation kind the summary reports for a workload
// (its Kinds()[0]: cycle, transfer…).
func HeadlineKind(workloadName string) string {
	if wl, err := workload.Lookup(workloadName); err == nil && len(wl.Kinds()) > 0 {
		return wl.Kinds()[0]
	}
	return "cycle"
}

// WriteSummary prints the terminal summary of a run: per implementation
// the headline operation's throughput and latencies and the violations,
// then the verdicts that failed and where the results are.
func WriteSummary(w io.Writer, r *results.Results, dir string) {
	kind := HeadlineKind(r.Workload)
	fenced := false
	for _, ir := range r.Impls {
		fenced = fenced || ir.Counters["fenced"] > 0
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "implementation\t" + kind + "s/s\tp50\tp99\tp99.9\tmax\tviolations\t"
	if fenced {
		head += "fenced\t"
	}
	fmt.Fprintln(tw, head)
	for _, ir := range r.Impls {
		st := ir.Ops[kind]
		name := ir.Name
		if ir.Mutant {
			name += " (mutant)"
		}
		line := fmt.Sprintf("%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t", name, st.Throughput,
			FormatMicros(st.P50), FormatMicros(st.P99), FormatMicros(st.P999), FormatMicros(st.Max), violations(r, ir.Name))
		if fenced {
			line += fmt.Sprintf("%d\t", ir.Counters["fenced"])
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	WritePhases(w, r) // per-phase p99 and baseline ratios (baseline.go)
	writeFailovers(w, r)
	writeUntested(w, r)
	for _, v := range r.Verdicts {
		if v.Valid == results.Valid {
			continue
		}
		fmt.Fprintf(w, "  %s %s: %s — %s\n", v.Impl, v.Checker, validityWord(v.Valid), v.Summary)
		for i, vi := range v.Violations {
			if i == 3 {
				if v.Found() > len(v.Violations) {
					fmt.Fprintf(w, "      … %d more (%d of them in results.json)\n", v.Found()-3, len(v.Violations)-3)
				} else {
					fmt.Fprintf(w, "      … %d more in results.json\n", len(v.Violations)-3)
				}
				break
			}
			fmt.Fprintf(w, "      %s\n", vi.Description)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if line := CalibrationLine(r.Calibration); line != "" {
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "path %s, provider %s, seed %d\n", r.Path, r.Provider, r.Seed)
	if dir != "" {
		fmt.Fprintf(w, "results: %s\n", dir)
	}
}

func validityWord(v results.Validity) string {
	switch v {
	case results.Invalid:
		return "VIOLATED"
	case results.Unknown:
		return "unknown"
	}
	return "ok"
}

// violations is the violations cell: how many violations the invalid
// verdicts found (not how many counterexamples they stored), and how many
// checkers could not decide.
func violations(r *results.Results, impl string) string {
	n := r.Violations(impl)
	unknown := 0
	for _, v := range r.Verdicts {
		if v.Impl == impl && v.Valid == results.Unknown {
			unknown++
		}
	}
	s := fmt.Sprint(n)
	if unknown > 0 {
		s += fmt.Sprintf(" (%d unknown)", unknown)
	}
	if ir := r.Impl(impl); ir != nil && ir.Faults != nil && ir.Faults.Untested != "" {
		s += " UNTESTED"
	}
	return s
}

// writeUntested prints, loudly, every implementation whose phase had
// faults scheduled but none that tested it: its verdicts are no pass.
func writeUntested(w io.Writer, r *results.Results) {
	for _, ir := range r.Impls {
		if ir.Faults != nil && ir.Faults.Untested != "" {
			fmt.Fprintf(w, "  %s: UNTESTED under faults — %s; its verdicts say nothing about faults\n", ir.Name, ir.Faults.Untested)
		}
	}
}

// FormatMicros renders a latency in µs with a readable unit.
func FormatMicros(us float64) string {
	switch {
	case us == 0:
		return "-"
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 1_000_000:
		return strings.TrimSuffix(fmt.Sprintf("%.2f", us/1000), "0") + "ms"
	}
	return fmt.Sprintf("%.2fs", us/1e6)
}

// writeFailovers prints each implementation's topology roles at its phase
// start and every failover: the primary lost, the replica promoted, and
// the failover time clients saw (loss → first write through).
func writeFailovers(w io.Writer, r *results.Results) {
	for _, ir := range r.Impls {
		if ir.Topology == "" {
			continue
		}
		start := ""
		if len(ir.Roles) > 0 {
			start = ", primary at start " + primaryOf(ir.Roles[0])
		}
		fmt.Fprintf(w, "  %s on %s%s\n", ir.Name, ir.Topology, start)
		for _, f := range ir.Failovers {
			line := fmt.Sprintf("    failover at %.3fs: %s lost, %s promoted", float64(f.Lost)/1e9, orDash(f.Old), orDash(f.New))
			if f.Promoted > 0 {
				line += fmt.Sprintf(" after %.0f ms", f.PromotionMs)
			}
			if f.FirstWrite > 0 {
				line += fmt.Sprintf("; failover time (loss → first write) %.0f ms", f.FailoverMs)
			} else {
				line += "; no write got through before the phase ended"
			}
			if f.Held != "" {
				line += "; holder held across the failover: " + f.Held
			}
			fmt.Fprintln(w, line)
		}
	}
}

// primaryOf names the node(s) a role sample calls primary.
func primaryOf(s results.RoleSample) string {
	var out []string
	for n, role := range s.Roles {
		if role == "primary" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "+")
}

func orDash(s string) string {
	if s == "" {
		return "?"
	}
	return s
}
