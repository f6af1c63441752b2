package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/faultline-dev/faultline/bench/history"
	"github.com/faultline-dev/faultline/bench/results"
	"github.com/faultline-dev/faultline/bench/workload"
)

// Check re-runs every checker of a saved run offline: it reads
// dir/results.json (the workload, the implementations and the settings the
// checkers need) and the history (dir/history.jsonl.zst, or the plain
// dir/history.jsonl of older runs), judges each implementation's
// history again with the same checks Run uses, replaces the verdicts (and
// the counters the checks produce), and rewrites dir/results.json. Nothing
// is started. A directory that is not a saved run, or a history that
// cannot be read, is a *UsageError.
func Check(dir string) (*results.Results, error) {
	res, err := results.Load(dir)
	if err != nil {
		return nil, &UsageError{Msg: err.Error()}
	}
	wl, err := workload.Lookup(res.Workload)
	if err != nil {
		return nil, usagef("%s: %v", filepath.Join(dir, results.FileName), err)
	}
	cfg, err := ConfigFromResults(res)
	if err != nil {
		return nil, usagef("%s: %v", filepath.Join(dir, results.FileName), err)
	}
	path, err := history.Find(dir)
	if err != nil {
		return nil, usagef("%s: no history to check: %v", dir, err)
	}
	res.Verdicts = []results.Verdict{}
	if err := check(res, wl, cfg, path); err != nil {
		return nil, &UsageError{Msg: err.Error()}
	}
	if err := results.Save(filepath.Join(dir, results.FileName), res); err != nil {
		return res, err
	}
	return res, nil
}

// ConfigFromResults rebuilds the settings of a saved run from its
// results.json config (the inverse of Config.Map, for what it records).
func ConfigFromResults(res *results.Results) (Config, error) {
	b, err := json.Marshal(res.Config)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	var f struct {
		Config
		Duration        string `json:"duration"`
		Warmup          string `json:"warmup"`
		TTL             string `json:"ttl"`
		OpTimeout       string `json:"op_timeout"`
		AcquireTimeout  string `json:"acquire_timeout"`
		NemesisInterval string `json:"nemesis_interval"`
		Quiet           string `json:"quiet"`
		Checkpoint      string `json:"checkpoint"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c := f.Config
	for _, d := range []struct {
		name string
		s    string
		to   *time.Duration
	}{
		{"duration", f.Duration, &c.Duration}, {"warmup", f.Warmup, &c.Warmup}, {"ttl", f.TTL, &c.TTL},
		{"op_timeout", f.OpTimeout, &c.OpTimeout}, {"acquire_timeout", f.AcquireTimeout, &c.AcquireTimeout},
		{"nemesis_interval", f.NemesisInterval, &c.NemesisInterval}, {"quiet", f.Quiet, &c.Quiet},
		{"checkpoint", f.Checkpoint, &c.Checkpoint},
	} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return Config{}, fmt.Errorf("config %s: %w", d.name, err)
		}
		*d.to = v
	}
	if c.TTL <= 0 {
		return Config{}, errors.New("config has no ttl: the lock checkers need it")
	}
	if c.Workload == "" {
		c.Workload = res.Workload
	}
	c.Impls = nil
	for _, ir := range res.Impls {
		c.Impls = append(c.Impls, ir.Name)
	}
	return c, nil
}
