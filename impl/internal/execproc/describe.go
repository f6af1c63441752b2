package execproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Prefix starts an implementation name that runs an executable:
// "exec:PATH" or "exec:PATH:NAME".
const Prefix = "exec:"

// Spec is a parsed "exec:PATH[:NAME]".
type Spec struct {
	Spec string // as given: the implementation's name in results
	Path string // the executable, resolved (absolute)
	// Name selects one implementation inside the executable (sent in
	// init); "" = its default.
	Name string
}

// LogFile is where the stderr of the process named who (e.g. "p3",
// "coordinator0") goes under a run directory: DIR/exec/NAME.WHO.stderr.log,
// NAME being the executable's base name (and the spec's NAME, if any).
// dir "" gives "" (stderr kept in memory only).
func (s Spec) LogFile(dir, who string) string {
	if dir == "" {
		return ""
	}
	n := strings.TrimSuffix(filepath.Base(s.Path), filepath.Ext(s.Path))
	if s.Name != "" {
		n += "-" + s.Name
	}
	return filepath.Join(dir, "exec", n+"."+who+".stderr.log")
}

// Declaration is what an init reply declares about the implementation.
type Declaration struct {
	Protocol      int    `json:"protocol"`
	Kind          string `json:"kind"` // "lock" or "txn"
	Name          string `json:"name"`
	Doc           string `json:"doc"`
	RedisNodes    int    `json:"redis_nodes"`
	PostgresNodes int    `json:"postgres_nodes"`
	Fencing       bool   `json:"fencing"`
	Mutant        bool   `json:"mutant"`
	// CrashInAcquire: the adapter honours "crash": true in an acquire by
	// SIGKILLing itself at its own crash point inside the operation.
	CrashInAcquire bool `json:"crash_in_acquire"`
}

// IsSpec says whether name is an exec: implementation name.
func IsSpec(name string) bool { return strings.HasPrefix(name, Prefix) }

// ParseSpec parses "exec:PATH[:NAME]" and resolves PATH: an absolute path
// as it is; a relative one against the working directory, then against its
// parents (so rows written from the repository root resolve from a test's
// package directory). PATH may not contain ':'.
func ParseSpec(spec string) (Spec, error) {
	rest, ok := strings.CutPrefix(spec, Prefix)
	if !ok || rest == "" {
		return Spec{}, fmt.Errorf("%q: want exec:PATH[:NAME]", spec)
	}
	path, name, _ := strings.Cut(rest, ":")
	if path == "" {
		return Spec{}, fmt.Errorf("%q: want exec:PATH[:NAME] (PATH is empty)", spec)
	}
	resolved, err := resolve(path)
	if err != nil {
		return Spec{}, fmt.Errorf("%s: %w", spec, err)
	}
	return Spec{Spec: spec, Path: resolved, Name: name}, nil
}

func resolve(path string) (string, error) {
	var tried []string
	try := func(p string) (string, bool) {
		tried = append(tried, p)
		st, err := os.Stat(p)
		return p, err == nil && !st.IsDir()
	}
	found, ok := "", false
	if filepath.IsAbs(path) {
		found, ok = try(path)
	} else if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if found, ok = try(filepath.Join(dir, path)); ok {
				break
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if !ok {
		return "", fmt.Errorf("no such executable file (looked at %s)", strings.Join(tried[:min(len(tried), 3)], ", "))
	}
	st, _ := os.Stat(found)
	if st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not executable (chmod +x it; a script needs a #! line)", found)
	}
	return found, nil
}

// describeTimeout bounds a describe session (an interpreter's start-up
// and imports included).
const describeTimeout = 20 * time.Second

var (
	describedMu sync.Mutex
	described   = map[string]describedImpl{} // by Spec.Spec: the registry of discovered executables
)

type describedImpl struct {
	spec Spec
	decl Declaration
}

// Describe runs the executable once with an init that carries no endpoints
// and "describe": true, and returns its declaration (cached per spec for
// the life of the program: an executable declares itself once).
func Describe(ctx context.Context, spec string) (Spec, Declaration, error) {
	describedMu.Lock()
	defer describedMu.Unlock()
	if d, ok := described[spec]; ok {
		return d.spec, d.decl, nil
	}
	s, err := ParseSpec(spec)
	if err != nil {
		return Spec{}, Declaration{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	p, err := Start(ctx, Config{Path: s.Path, Label: spec + " (describe)"})
	if err != nil {
		return Spec{}, Declaration{}, err
	}
	defer p.Close(time.Second)
	decl, err := Init(ctx, p, InitRequest{Process: -1, Name: s.Name, Describe: true})
	if err != nil {
		return Spec{}, Declaration{}, err
	}
	described[spec] = describedImpl{spec: s, decl: decl}
	return s, decl, nil
}

// Endpoint is one server in an init request.
type Endpoint struct {
	Name     string `json:"name"`
	Addr     string `json:"addr,omitempty"`     // Redis host:port
	Password string `json:"password,omitempty"` // Redis
	DSN      string `json:"dsn,omitempty"`      // PostgreSQL
}

// Endpoints are the servers of an init request, by role.
type Endpoints struct {
	Redis    []Endpoint `json:"redis"`
	Postgres []Endpoint `json:"postgres"`
	// Coordinator is the transaction coordinator's database (txn only).
	Coordinator *Endpoint `json:"coordinator,omitempty"`
	// KeyPrefix must start every Redis key the adapter writes beyond the
	// lock keys it is given (which carry it already); "" on servers
	// faultline owns (see docs/protocol.md, external servers).
	KeyPrefix string `json:"key_prefix,omitempty"`
	// GIDPrefix must start every prepared-transaction gid a transaction
	// adapter creates ("fl:<run>:"; txn only): faultline rolls back and
	// reports only the gids under it.
	GIDPrefix string `json:"gid_prefix,omitempty"`
}

// InitRequest is the init message's content.
type InitRequest struct {
	Process   int
	Name      string
	Describe  bool
	Endpoints Endpoints
	Options   map[string]string
}

// Init sends init and checks the declaration in its reply.
func Init(ctx context.Context, p *Proc, in InitRequest) (Declaration, error) {
	if in.Options == nil {
		in.Options = map[string]string{}
	}
	if in.Endpoints.Redis == nil {
		in.Endpoints.Redis = []Endpoint{}
	}
	if in.Endpoints.Postgres == nil {
		in.Endpoints.Postgres = []Endpoint{}
	}
	r, err := p.Call(ctx, "init", map[string]any{
		"protocol": Version, "process": in.Process, "name": in.Name, "describe": in.Describe,
		"endpoints": in.Endpoints, "options": in.Options,
	})
	if err != nil {
		return Declaration{}, fmt.Errorf("init: %w", err)
	}
	if r.Outcome != "ok" {
		return Declaration{}, fmt.Errorf("%s (pid %d): init failed (%s): %s%s", p.Label(), p.Pid(), r.Outcome, r.Message, p.stderrTail())
	}
	var d Declaration
	if err := json.Unmarshal(r.Raw, &d); err != nil {
		return Declaration{}, p.Broken(r, fmt.Sprintf("init reply does not decode: %v", err))
	}
	var problems []string
	if d.Protocol != Version {
		problems = append(problems, fmt.Sprintf("protocol %d (faultline speaks %d)", d.Protocol, Version))
	}
	if d.Kind != "lock" && d.Kind != "txn" {
		problems = append(problems, fmt.Sprintf("kind %q (want lock or txn)", d.Kind))
	}
	if d.RedisNodes < 0 || d.PostgresNodes < 0 || d.RedisNodes > 9 || d.PostgresNodes > 9 {
		problems = append(problems, fmt.Sprintf("redis_nodes %d, postgres_nodes %d (want 0..9)", d.RedisNodes, d.PostgresNodes))
	}
	if len(problems) > 0 {
		return Declaration{}, p.Broken(r, "init reply declares "+strings.Join(problems, ", "))
	}
	return d, nil
}

// Broken kills the process for a reply that is valid JSON but not a valid
// reply to its request, and returns the error naming the line.
func (p *Proc) Broken(r Reply, why string) error {
	err := fmt.Errorf("%w: %s (pid %d): stdout line %d: %s: %s", ErrProtocol, p.cfg.Label, p.Pid(), r.Line, why, quote(r.Raw))
	p.Kill(err)
	return err
}

// Lost says whether err means the process is gone (died, no reply,
// protocol error, abandoned), and names how, for the history.
func Lost(err error) (string, bool) {
	switch {
	case errors.Is(err, ErrProtocol):
		return "protocol-error", true
	case errors.Is(err, ErrNoReply):
		return "no-reply", true
	case errors.Is(err, ErrDied):
		return "process-died", true
	case errors.Is(err, errAbandoned):
		return "canceled", true
	}
	return "", false
}
