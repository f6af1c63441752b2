package chaos

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Expectation is the verdict class a matrix row expects.
type Expectation string

// Verdict classes of the expected-verdict matrix.
const (
	// Safe: every checker is Valid (Unknown only where the row says
	// unknown-ok); no safety violation, no liveness error.
	Safe Expectation = "safe"
	// ViolationExpected: each named checker is Invalid with at least one
	// violation (the counterexample).
	ViolationExpected Expectation = "violation"
	// LivenessExpected: each named liveness/availability check fails, and
	// no safety checker is Invalid.
	LivenessExpected Expectation = "liveness"
)

// Row flags (tokens of the expect column after the class and checkers).
const (
	FlagUnknownOK = "unknown-ok" // Unknown verdicts are acceptable
	FlagFenced    = "fenced"     // the resource rejected at least one stale write
	FlagRecovered = "recovered"  // every crashed holder's key was re-acquired within ttl+slack
	// FlagInDoubt (transaction rows, bank workload): a prepared transaction
	// stayed in doubt (its time is reported) and recovery resolved it.
	FlagInDoubt = "in-doubt"
)

// Availability is the name of the availability checker (bench/checker:
// acquires that nobody could serve inside a node or network fault window,
// stalls and early give-ups outside them), a liveness check.
const Availability = "availability"

// livenessChecks are the checks a liveness row may name; every other checker
// name is a safety checker. Transaction rows may add theirs here.
var livenessChecks = []string{"liveness", "leaked-locks", Availability}

// IsLivenessCheck says whether name is a liveness/availability check rather
// than a safety checker.
func IsLivenessCheck(name string) bool { return slices.Contains(livenessChecks, name) }

// Row is one line of the expected-verdict matrix: an implementation under a
// fault on a workload, and the verdict the Chaos suite asserts.
type Row struct {
	Impl     string
	Fault    string // short fault name (kill, partition-majority, restart-majority…)
	Workload string // counter, fenced-counter, bank…
	Expect   Expectation
	// Checkers: for violation rows the checkers that must be Invalid; for
	// liveness rows the liveness checks that must fail.
	Checkers []string
	Flags    []string
	// Run is what the suite does: "-" (no fault), fault specs separated by
	// ";" (chaos.Grammar), or "script" (a scripted interleaving named
	// Fault); "name=value" parts without "@" are settings (Settings).
	Run  string
	Why  string
	Line int // 1-based line in the matrix file
}

// Has says whether the row carries flag.
func (r Row) Has(flag string) bool { return slices.Contains(r.Flags, flag) }

// Scripted says whether the row is a scripted interleaving.
func (r Row) Scripted() bool {
	return r.Run == "script" || strings.HasPrefix(r.Run, "script;")
}

// Specs are the row's fault specs (none for "-" and scripts).
func (r Row) Specs() []string {
	var out []string
	for _, s := range r.runParts() {
		if !isSetting(s) {
			out = append(out, s)
		}
	}
	return out
}

// FaultKinds are the fault kinds the row injects, sorted: the kinds of its
// specs, and for a scripted row the kinds its interleaving stands for,
// declared by its faults= setting (faults=partition-pair,failover). The CI
// gate allows a row's failing checkers in a faulted run only when every one
// of these kinds ran; a scripted row without faults= allows nothing there.
func (r Row) FaultKinds() []string {
	var out []string
	for _, s := range r.Specs() {
		if sp, err := Parse(s); err == nil {
			out = append(out, sp.Kind)
		}
	}
	if fs := r.Settings()[SettingFaults]; fs != "" {
		for _, k := range strings.Split(fs, ",") {
			if kd, err := LookupKind(k); err == nil {
				out = append(out, kd.Name)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// SettingFaults is the setting of a scripted row naming the fault kinds its
// interleaving stands for (Row.FaultKinds).
const SettingFaults = "faults"

// Settings are the row's run settings: the "name=value" parts of the run
// column without an "@" (e.g. ttl=600ms), overriding the suite's defaults.
func (r Row) Settings() map[string]string {
	out := map[string]string{}
	for _, s := range r.runParts() {
		if isSetting(s) {
			k, v, _ := strings.Cut(s, "=")
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

func (r Row) runParts() []string {
	var out []string
	for _, s := range strings.Split(r.Run, ";") {
		if s = strings.TrimSpace(s); s != "" && s != "-" && s != "script" {
			out = append(out, s)
		}
	}
	return out
}

// isSetting: a run part "name=value" with no "@" (a fault spec has one).
func isSetting(s string) bool { return !strings.Contains(s, "@") && strings.Contains(s, "=") }

// Name is "impl/fault[/workload]", the row's test name.
func (r Row) Name() string { return r.Impl + "/" + r.Fault + "/" + r.Workload }

// String renders the expectation as written.
func (r Row) String() string {
	return strings.Join(append(append([]string{string(r.Expect)}, r.Checkers...), r.Flags...), " ")
}

// Expected is a loaded expected-verdict matrix.
type Expected struct {
	Path string
	Rows []Row
}

// LoadExpected reads the matrix at path (see chaos/expected.md for the
// format).
func LoadExpected(path string) (*Expected, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("expected-verdict matrix: %w", err)
	}
	defer f.Close()
	e, err := ParseExpected(f, path)
	if err != nil {
		return nil, err
	}
	return e, nil
}

var namePat = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)

// execPat is an exec: implementation (docs/protocol.md): exec:PATH[:NAME].
var execPat = regexp.MustCompile(`^exec:[A-Za-z0-9_./-]+(:[a-z0-9.-]+)?$`)

// ParseExpected parses a matrix: the Markdown table rows (lines starting
// with "|") with the columns impl | fault | workload | expect | run | why;
// the header row (impl) and the separator row are skipped, every other line
// is prose. The expect column is a class (safe, violation, liveness),
// then checker names, then flags (unknown-ok, fenced, recovered). name
// appears in errors.
func ParseExpected(r io.Reader, name string) (*Expected, error) {
	e := &Expected{Path: name}
	sc := bufio.NewScanner(r)
	seen := map[string]int{}
	var errs []string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(strings.ReplaceAll(cells[i], "`", ""))
		}
		if len(cells) > 0 && (cells[0] == "impl" || strings.HasPrefix(cells[0], "---") || strings.HasPrefix(cells[0], ":--")) {
			continue
		}
		row, err := parseRow(cells, n)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s:%d: %v", name, n, err))
			continue
		}
		key := row.Name()
		if prev, dup := seen[key]; dup {
			errs = append(errs, fmt.Sprintf("%s:%d: %s is already on line %d", name, n, key, prev))
			continue
		}
		seen[key] = n
		e.Rows = append(e.Rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("expected-verdict matrix: %s", strings.Join(errs, "; "))
	}
	if len(e.Rows) == 0 {
		return nil, fmt.Errorf("expected-verdict matrix %s: no rows (want Markdown table lines | impl | fault | workload | expect | run | why |)", name)
	}
	return e, nil
}

func parseRow(cells []string, line int) (Row, error) {
	if len(cells) != 6 {
		return Row{}, fmt.Errorf("want 6 columns (impl | fault | workload | expect | run | why), got %d", len(cells))
	}
	r := Row{Impl: cells[0], Fault: cells[1], Workload: cells[2], Run: cells[4], Why: cells[5], Line: line}
	for what, v := range map[string]string{"impl": r.Impl, "fault": r.Fault, "workload": r.Workload} {
		if !namePat.MatchString(v) && !(what == "impl" && execPat.MatchString(v)) {
			return Row{}, fmt.Errorf("%s %q: want a lower-case name", what, v)
		}
	}
	if r.Run == "" {
		return Row{}, fmt.Errorf("empty run column: want -, fault specs separated by ';', or script")
	}
	if r.Why == "" {
		return Row{}, fmt.Errorf("%s/%s: say why in the last column", r.Impl, r.Fault)
	}
	if fs, ok := r.Settings()[SettingFaults]; ok {
		if !r.Scripted() {
			return Row{}, fmt.Errorf("%s=%s: only a scripted row declares its fault kinds (a spec row's are its specs')", SettingFaults, fs)
		}
		for _, k := range strings.Split(fs, ",") {
			if _, err := LookupKind(k); err != nil {
				return Row{}, fmt.Errorf("%s=%s: %w", SettingFaults, fs, err)
			}
		}
	}
	toks := strings.Fields(cells[3])
	if len(toks) == 0 {
		return Row{}, fmt.Errorf("empty expect column: want safe, violation <checker…> or liveness <check…>")
	}
	r.Expect = Expectation(toks[0])
	switch r.Expect {
	case Safe, ViolationExpected, LivenessExpected:
	default:
		return Row{}, fmt.Errorf("expect %q: want safe, violation or liveness", toks[0])
	}
	for _, t := range toks[1:] {
		switch t {
		case FlagUnknownOK, FlagFenced, FlagRecovered, FlagInDoubt:
			r.Flags = append(r.Flags, t)
		default:
			if !namePat.MatchString(t) {
				return Row{}, fmt.Errorf("expect token %q: want a checker name or a flag (%s, %s, %s)", t, FlagUnknownOK, FlagFenced, FlagRecovered+", "+FlagInDoubt)
			}
			r.Checkers = append(r.Checkers, t)
		}
	}
	switch r.Expect {
	case Safe:
		if len(r.Checkers) > 0 {
			return Row{}, fmt.Errorf("a safe row names no checker, got %v", r.Checkers)
		}
	case ViolationExpected:
		if len(r.Checkers) == 0 {
			return Row{}, fmt.Errorf("a violation row names the checker(s) that must catch it, e.g. violation mutual-exclusion")
		}
	case LivenessExpected:
		if len(r.Checkers) == 0 {
			return Row{}, fmt.Errorf("a liveness row names the check(s) that must fail (%s)", strings.Join(livenessChecks, ", "))
		}
		for _, c := range r.Checkers {
			if !IsLivenessCheck(c) {
				return Row{}, fmt.Errorf("liveness row names %q, a safety checker: use a violation row", c)
			}
		}
	}
	return r, nil
}

// Lookup returns the rows of impl under fault (one per workload).
func (e *Expected) Lookup(impl, fault string) []Row {
	var out []Row
	for _, r := range e.Rows {
		if r.Impl == impl && r.Fault == fault {
			out = append(out, r)
		}
	}
	return out
}

// Allowed says whether a failed verdict of checker is expected for impl
// under some fault of the matrix, whichever fault: a violation that is not
// Allowed is never expected. The CI gate is stricter: it also matches the
// fault kinds that ran (Row.FaultKinds, reports/gate.MatrixAllowed).
func (e *Expected) Allowed(impl, checker string) bool {
	for _, r := range e.Rows {
		if r.Impl == impl && r.Expect != Safe && slices.Contains(r.Checkers, checker) {
			return true
		}
	}
	return false
}
