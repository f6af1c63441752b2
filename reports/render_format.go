package reports

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/bench/results"
)

// Number, time and map formatting for the report's templates.

// fmtMeasure prints a verdict measure with the unit results.json declares
// for it (none when undeclared).
func fmtMeasure(info *results.WorkloadInfo, checker, name string, x float64) string {
	switch m := info.Measure(checker, name); {
	case m == nil:
	case m.Unit == results.UnitMS:
		return fmtNum(x) + " ms"
	case m.Unit == results.UnitRatio:
		return strconv.FormatFloat(x*100, 'f', 1, 64) + "%"
	}
	return fmtNum(x)
}

func fmtSecNS(ns int64) string {
	return strconv.FormatFloat(float64(ns)/1e9, 'f', 3, 64) + " s"
}

// fmtPct prints a relative change: +12%, or ×35 when the value grew more
// than threefold (a percentage that large reads poorly).
func fmtPct(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "–"
	case x >= 2:
		return fmt.Sprintf("×%.3g", x+1)
	}
	return fmt.Sprintf("%+.0f%%", x*100)
}

func deltaClass(x float64) string {
	switch {
	case math.IsNaN(x):
		return ""
	case x > 0.1:
		return "worse"
	case x < -0.1:
		return "better"
	}
	return ""
}

func fmtNum(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatInt(int64(x), 10)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

func joinInts[T int | int64](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatInt(int64(x), 10)
	}
	return strings.Join(s, ", ")
}

func fmtStarted(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func flatten(m map[string]any) []kv {
	var out []kv
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range sortedKeys(x) {
				walk(strings.TrimPrefix(prefix+"."+k, "."), x[k])
			}
		case string:
			out = append(out, kv{prefix, x})
		default:
			b, err := json.Marshal(x)
			if err != nil {
				b = []byte(fmt.Sprint(x))
			}
			out = append(out, kv{prefix, string(b)})
		}
	}
	walk("", m)
	return out
}

func sortedKV(m map[string]string) []kv {
	out := make([]kv, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, kv{k, m[k]})
	}
	return out
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
