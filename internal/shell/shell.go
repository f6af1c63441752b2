// Package shell quotes words for a POSIX shell (sh, bash, dash, zsh in sh
// mode), so a recorded command line can be pasted back and run as is.
package shell

import "strings"

// Quote returns s as one shell word. A word made only of characters no
// shell treats specially (letters, digits and -_=.,:/@+%) is returned as
// is; anything else, the empty string included, is put in single quotes,
// inside which only the single quote itself needs care: each one closes
// the quoted part, is written escaped (\') and opens a new one.
//
// The word is an argument, not a command's first word: a bare "a=b" as the
// first word would be a variable assignment.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, unsafe) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes every word with Quote and joins them with spaces.
func Join(words []string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = Quote(w)
	}
	return strings.Join(quoted, " ")
}

// unsafe reports whether r may need quoting; the safe set is ASCII only.
func unsafe(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune("-_=.,:/@+%", r)
}
