package option

import (
	"strings"
	"testing"
	"time"
)

func TestSpecCheck(t *testing.T) {
	set := Set{
		{Name: "n", Kind: Int, Min: 2, Max: 10},
		{Name: "f", Kind: Float, Min: 0, Max: 1},
		{Name: "d", Kind: Duration, Min: float64(time.Millisecond)},
		{Name: "b", Kind: Bool},
		{Name: "c", Kind: Choice, Choices: []string{"x", "y"}},
		{Name: "t", Kind: Text},
	}
	for _, c := range []struct {
		kv   map[string]string
		want string // "" = valid
	}{
		{map[string]string{"n": "2", "f": "0.5", "d": "1s", "b": "true", "c": "y", "t": "pg-2"}, ""},
		{map[string]string{"n": "1"}, "out of range: want in [2, 10]"},
		{map[string]string{"n": "x"}, "want a whole number"},
		{map[string]string{"f": "NaN"}, "want a number"},
		{map[string]string{"f": "+Inf"}, "want a number"},
		{map[string]string{"f": "1.5"}, "out of range"},
		{map[string]string{"d": "-1s"}, "out of range: want ≥ 1ms"},
		{map[string]string{"d": "soon"}, "want a duration"},
		{map[string]string{"b": "maybe"}, "want true or false"},
		{map[string]string{"c": "z"}, "want one of x, y"},
		{map[string]string{"t": ""}, "want a value"},
		{map[string]string{"nope": "1"}, `has no option "nope" (valid: b, c, d, f, n, t)`},
	} {
		err := set.Check("test", c.kv)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.kv, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: err %v, want %q", c.kv, err, c.want)
		}
	}
	if err := (Set{}).Check("empty", map[string]string{"a": "1"}); err == nil || !strings.Contains(err.Error(), "valid: none") {
		t.Errorf("empty set: %v", err)
	}
	if u := set[0].Usage(); !strings.Contains(u, "n=<int in [2, 10]>") {
		t.Errorf("usage %q", u)
	}
}
