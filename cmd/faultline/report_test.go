package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `faultline report` on input that is not a readable saved run exits 2 and
// names the problem: no results.json, another schema, a corrupt or
// truncated history (file and line).
func TestReportBadInputExits2(t *testing.T) {
	const res = `{"schema":1,"run_id":"r","impls":[{"name":"a","ops":{"cycle":{"count":1,"ok":1,"n":1,"p50_us":10}}}],"verdicts":[]}`
	const line = `{"index":0,"time":1,"type":"invoke","process":0,"impl":"a","f":"cycle"}`
	tests := []struct {
		name, results, history string
		want                   []string
	}{
		{"no results", "", "", []string{"results.json", "cannot read it"}},
		{"another schema", `{"schema":7}`, "", []string{"results schema 7", "expected schema 1"}},
		{"truncated history", res, line + "\n" + `{"index":1,"ti`, []string{"history.jsonl line 2"}},
		{"garbage history", res, "\n\n\x00garbage\n", []string{"history.jsonl line 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.results != "" {
				if err := os.WriteFile(filepath.Join(dir, "results.json"), []byte(tt.results), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.history != "" {
				if err := os.WriteFile(filepath.Join(dir, "history.jsonl"), []byte(tt.history), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			code, stdout, stderr := cli(t, "report", dir)
			if code != 2 {
				t.Fatalf("exit %d, want 2\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	// The same run with a sound history renders.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "results.json"), []byte(res), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "history.jsonl"), []byte(fmt.Sprintln(line)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cli(t, "report", dir); code != 0 {
		t.Fatalf("sound run: exit %d: %s", code, stderr)
	}
}
