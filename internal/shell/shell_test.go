package shell

import (
	"os/exec"
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"plain", "plain"},
		{"--lock-opt", "--lock-opt"},
		{"k=v", "k=v"},
		{"latency:all=200ms@1s+2s", "latency:all=200ms@1s+2s"},
		{"a,b/c.d_e%f", "a,b/c.d_e%f"},
		{"two words", "'two words'"},
		{"a;b", "'a;b'"},
		{"a&b", "'a&b'"},
		{"a|b", "'a|b'"},
		{"$HOME", "'$HOME'"},
		{"`id`", "'`id`'"},
		{"$(id)", "'$(id)'"},
		{`it's`, `'it'\''s'`},
		{"'", `''\'''`},
		{`say "hi"`, `'say "hi"'`},
		{`back\slash`, `'back\slash'`},
		{"line\nbreak", "'line\nbreak'"},
		{"tab\there", "'tab\there'"},
		{"*", "'*'"},
		{"a?b", "'a?b'"},
		{"[ab]", "'[ab]'"},
		{"{a,b}", "'{a,b}'"},
		{"~", "'~'"},
		{"#comment", "'#comment'"},
		{"a>b", "'a>b'"},
		{"a<b", "'a<b'"},
		{"(x)", "'(x)'"},
		{"!x", "'!x'"},
		{"200ms±50ms", "'200ms±50ms'"},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestJoin(t *testing.T) {
	if got, want := Join([]string{"faultline", "run", "--fault", "a;b", ""}), `faultline run --fault 'a;b' ''`; got != want {
		t.Errorf("Join = %s, want %s", got, want)
	}
	if got := Join(nil); got != "" {
		t.Errorf("Join(nil) = %q, want empty", got)
	}
}

// TestRoundTrip gives a real shell the joined words and checks it hands
// back exactly the words given: one per printf line, nothing expanded,
// nothing run.
func TestRoundTrip(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	words := []string{
		"plain", "", "two words", "a;b", "a&b", "a|b", "a&&b||c", "$HOME", "${PATH}",
		"`touch /tmp/faultline-shell-pwned`", "$(touch /tmp/faultline-shell-pwned)",
		`it's`, "'", "''", `"`, `say "hi"`, `back\slash`, `\`, "tab\there",
		"*", "?", "[a]", "{a,b}", "~", "~root", "#not a comment", "a>b", "a<b", "(x)", "!x",
		"k=v", "200ms±50ms", "--fault", "latency:all=200ms@1s+2s", "%1", "-n", "-e",
	}
	// printf '%s\n' puts each argument on its own line, so no word may hold
	// a newline here; Quote's handling of one is checked in TestQuote and below.
	out, err := exec.Command(sh, "-c", `printf '%s\n' `+Join(words)).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(got) != len(words) {
		t.Fatalf("sh gave %d words, want %d:\n%q", len(got), len(words), got)
	}
	for i := range words {
		if got[i] != words[i] {
			t.Errorf("word %d: sh gave %q, want %q", i, got[i], words[i])
		}
	}

	// A newline inside a word survives too (printf %s prints it as is).
	out, err = exec.Command(sh, "-c", `printf '%s|' `+Join([]string{"line\nbreak", "x"})).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	if got, want := string(out), "line\nbreak|x|"; got != want {
		t.Errorf("newline round trip: sh gave %q, want %q", got, want)
	}
}
