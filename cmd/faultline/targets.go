package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/faultline-dev/faultline/infra"
)

// targetFlags are the flags naming servers faultline does not own
// (--provider external), shared by `run` and `gc`. No password is ever
// taken from the command line: Redis's comes from --redis-password-env,
// PostgreSQL's from --postgres-password-env, a DSN file or a targets file.
type targetFlags struct {
	redis, postgres          listFlag
	redisPwEnv, pgPwEnv      string
	dsnFile, targetsFile, ns string
}

func (t *targetFlags) register(fs *flag.FlagSet) {
	t.redis.split, t.postgres.split = true, true
	fs.Var(&t.redis, "redis", "external Redis servers host:port[,host:port…] (--provider external); append #container=NAME to let faultline kill/pause/restart it through Docker")
	fs.StringVar(&t.redisPwEnv, "redis-password-env", "", "environment variable holding the external Redis servers' password")
	fs.Var(&t.postgres, "postgres", "external PostgreSQL databases postgres://user@host:port/db[,…] without password (#container=NAME as for --redis)")
	fs.StringVar(&t.pgPwEnv, "postgres-password-env", "", "environment variable holding the password of the --postgres databases")
	fs.StringVar(&t.dsnFile, "postgres-dsn-file", "", "file with one postgres:// DSN per line (passwords allowed), instead of --postgres")
	fs.StringVar(&t.targetsFile, "targets", "", "targets file (JSON, or YAML by extension .yaml/.yml): {\"redis\":[{\"addr\":…,\"password_env\":…,\"container\":…}],\"postgres\":[{\"dsn\":…,\"password_env\":…,\"container\":…}]}")
	fs.StringVar(&t.ns, "namespace", "", "run namespace on external servers: keys under faultline:NS:, tables in schema faultline_NS (default: fresh for run; for gc: every faultline namespace)")
}

func (t *targetFlags) given() bool {
	return len(t.redis.vals) > 0 || len(t.postgres.vals) > 0 || t.dsnFile != "" || t.targetsFile != ""
}

// targetsFile is the --targets file's shape.
type targetsFile struct {
	Redis []struct {
		Addr        string `json:"addr" yaml:"addr"`
		PasswordEnv string `json:"password_env" yaml:"password_env"`
		Container   string `json:"container" yaml:"container"`
	} `json:"redis" yaml:"redis"`
	Postgres []struct {
		DSN         string `json:"dsn" yaml:"dsn"`
		PasswordEnv string `json:"password_env" yaml:"password_env"`
		Container   string `json:"container" yaml:"container"`
	} `json:"postgres" yaml:"postgres"`
}

// targets resolves the flags into targets named redis-1.. and pg-1.. in
// the order given (targets file first). Every error says what to do.
func (t *targetFlags) targets() ([]infra.ExternalTarget, error) {
	type raw struct{ addr, pwEnv, container string }
	var rs, ps []raw
	if t.targetsFile != "" {
		b, err := os.ReadFile(t.targetsFile)
		if err != nil {
			return nil, fmt.Errorf("--targets: %w", err)
		}
		var f targetsFile
		switch strings.ToLower(filepath.Ext(t.targetsFile)) {
		case ".yaml", ".yml":
			err = yaml.Unmarshal(b, &f)
		default:
			dec := json.NewDecoder(strings.NewReader(string(b)))
			dec.DisallowUnknownFields()
			err = dec.Decode(&f)
		}
		if err != nil {
			return nil, fmt.Errorf("--targets %s: %w (want redis: [{addr, password_env, container}], postgres: [{dsn, password_env, container}])", t.targetsFile, err)
		}
		for _, r := range f.Redis {
			rs = append(rs, raw{r.Addr, r.PasswordEnv, r.Container})
		}
		for _, p := range f.Postgres {
			ps = append(ps, raw{p.DSN, p.PasswordEnv, p.Container})
		}
	}
	split := func(v string) (string, string, error) {
		s, c, ok := strings.Cut(v, "#")
		if !ok {
			return v, "", nil
		}
		name, ok := strings.CutPrefix(c, "container=")
		if !ok || name == "" {
			return "", "", fmt.Errorf("%q: after # want container=NAME", v)
		}
		return s, name, nil
	}
	for _, v := range t.redis.vals {
		a, c, err := split(v)
		if err != nil {
			return nil, fmt.Errorf("--redis %w", err)
		}
		rs = append(rs, raw{a, t.redisPwEnv, c})
	}
	for _, v := range t.postgres.vals {
		d, c, err := split(v)
		if err != nil {
			return nil, fmt.Errorf("--postgres %w", err)
		}
		if u, err := url.Parse(d); err == nil && u.User != nil {
			if _, set := u.User.Password(); set {
				return nil, fmt.Errorf("--postgres %s: a password on the command line ends up in shell history and process lists: put it in an environment variable named by --postgres-password-env, or the DSN in --postgres-dsn-file", infra.RedactDSN(d))
			}
		}
		ps = append(ps, raw{d, t.pgPwEnv, c})
	}
	if t.dsnFile != "" {
		b, err := os.ReadFile(t.dsnFile)
		if err != nil {
			return nil, fmt.Errorf("--postgres-dsn-file: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			d, c, err := split(line)
			if err != nil {
				return nil, fmt.Errorf("--postgres-dsn-file %w", err)
			}
			ps = append(ps, raw{d, t.pgPwEnv, c})
		}
	}
	password := func(flagName, env string) (string, error) {
		if env == "" {
			return "", nil
		}
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("%s %s: the environment variable is not set", flagName, env)
		}
		return v, nil
	}
	var out []infra.ExternalTarget
	for i, r := range rs {
		if _, _, err := net.SplitHostPort(r.addr); err != nil {
			return nil, fmt.Errorf("external Redis %q: want host:port: %w", r.addr, err)
		}
		pw, err := password("--redis-password-env", r.pwEnv)
		if err != nil {
			return nil, err
		}
		out = append(out, infra.ExternalTarget{Name: fmt.Sprintf("redis-%d", i+1), Kind: infra.Redis, Addr: r.addr, Password: pw, Container: r.container})
	}
	for i, p := range ps {
		u, err := url.Parse(p.addr)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			return nil, fmt.Errorf("external PostgreSQL %s: want a URL postgres://user@host:port/db (key=value DSNs are not supported)", infra.RedactDSN(p.addr))
		}
		if u.Query().Has("search_path") || u.Query().Has("options") {
			return nil, fmt.Errorf("external PostgreSQL %s: remove search_path/options: faultline sets the search_path to the run's schema", infra.RedactDSN(p.addr))
		}
		pw, err := password("--postgres-password-env", p.pwEnv)
		if err != nil {
			return nil, err
		}
		if pw != "" {
			user := "postgres"
			if u.User != nil {
				user = u.User.Username()
			}
			u.User = url.UserPassword(user, pw)
		}
		out = append(out, infra.ExternalTarget{Name: fmt.Sprintf("pg-%d", i+1), Kind: infra.Postgres, DSN: u.String(), Container: p.container})
	}
	if len(out) == 0 {
		return nil, errors.New("no external target: give --redis, --postgres, --postgres-dsn-file or --targets")
	}
	// Each node must be a server (a database) of its own: two Redlock
	// nodes on one server share their keys, two bank participants on one
	// database share their tables, and the checkers would judge nonsense.
	seen := map[string]string{}
	for _, tg := range out {
		where := tg.Addr
		if tg.Kind == infra.Postgres {
			where = infra.RedactDSN(tg.DSN)
			if u, err := url.Parse(tg.DSN); err == nil {
				where = u.Host + u.Path
			}
		}
		if prev, dup := seen[where]; dup {
			return nil, fmt.Errorf("external %s and %s are the same %s (%s): each target must be a server (PostgreSQL: a database) of its own", prev, tg.Name, tg.Kind, where)
		}
		seen[where] = tg.Name
	}
	return out, nil
}
