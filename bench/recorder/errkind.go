package recorder

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// maxKindLen caps a normalised error kind (bytes).
const maxKindLen = 120

// Patterns NormalizeError replaces, in order. Addresses first (an IPv4
// address contains numbers), then paths, durations, ids and the remaining
// standalone numbers.
var normalizers = []struct {
	re   *regexp.Regexp
	with func(s string) string
}{
	// [::1]:6379, [fe80::1%lo]:5432
	{regexp.MustCompile(`\[[0-9A-Fa-f:.%\w]*\](:\d+)?`), always("ADDR")},
	// 127.0.0.1:54321, 10.0.0.2
	{regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b`), always("ADDR")},
	// localhost:6379, redis.example.com:6379
	{regexp.MustCompile(`\b(localhost|[A-Za-z][\w-]*(\.[\w-]+)+):\d+\b`), always("ADDR")},
	// /tmp/faultline-123/.s.PGSQL.5432 (after a space, a quote, "(" or "=")
	{regexp.MustCompile(`(^|[\s"'(=])/[^\s"')]+`), func(s string) string {
		if s[0] == '/' {
			return "PATH"
		}
		return s[:1] + "PATH"
	}},
	// 1.5ms, 200µs, 3s
	{regexp.MustCompile(`\b\d+(\.\d+)?(ns|us|µs|ms|s|m|h)\b`), always("DURATION")},
	// UUIDs, then hex ids of 8 or more with a digit (gids, tokens);
	// "deadbeef"-like words without a digit stay.
	{regexp.MustCompile(`\b[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b`), always("ID")},
	{regexp.MustCompile(`\b[0-9a-fA-F]{8,}\b`), func(s string) string {
		if strings.ContainsAny(s, "0123456789") {
			return "ID"
		}
		return s
	}},
}

// number is a standalone number (port, pid, size, offset, process id).
var number = regexp.MustCompile(`\b\d+\b`)

func always(s string) func(string) string { return func(string) string { return s } }

// sqlstate protects "SQLSTATE 40001" from the number rule.
var sqlstate = regexp.MustCompile(`SQLSTATE [0-9A-Z]{5}`)

// NormalizeError turns an error message into its kind for counting: the
// same failure gives the same kind whatever ephemeral port, address,
// temporary path, duration, id or number it carried. "read tcp
// 127.0.0.1:54321->127.0.0.1:6379: i/o timeout" becomes "read tcp
// ADDR->ADDR: i/o timeout". Short kinds ("timeout", "fenced",
// "not-acquired") are returned as they are. The result is at most 120
// bytes.
func NormalizeError(msg string) string {
	var codes []string
	msg = sqlstate.ReplaceAllStringFunc(msg, func(s string) string {
		codes = append(codes, s)
		return "\x00"
	})
	for _, n := range normalizers {
		msg = n.re.ReplaceAllStringFunc(msg, n.with)
	}
	msg = replaceNumbers(msg)
	for _, c := range codes {
		msg = strings.Replace(msg, "\x00", c, 1)
	}
	if len(msg) > maxKindLen {
		cut := maxKindLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	return msg
}

// replaceNumbers replaces every standalone number by N, except the number
// of a node name such as redis-1 or pg-2 (a letter, a dash, the number),
// which is not ephemeral.
func replaceNumbers(msg string) string {
	idx := number.FindAllStringIndex(msg, -1)
	if idx == nil {
		return msg
	}
	var b strings.Builder
	last := 0
	for _, m := range idx {
		if m[0] >= 2 && msg[m[0]-1] == '-' && isLetter(msg[m[0]-2]) {
			continue
		}
		b.WriteString(msg[last:m[0]])
		b.WriteString("N")
		last = m[1]
	}
	b.WriteString(msg[last:])
	return b.String()
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
