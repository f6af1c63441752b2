package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/faultline-dev/faultline/infra"
)

// A process fault on an external target faultline does not own exits 2,
// naming the fault and why, before anything connects to the server; the
// same fault on a target with a container is accepted (dry run).
func TestExternalRefusesProcessFaults(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		output []string
		absent []string // e.g. the start line: a refusal comes before it
	}{
		{"kill refused", []string{"--redis", addr, "--fault", "kill:redis-1@1s"}, exitUsage,
			[]string{`fault "kill:redis-1@1s" refused`, "process fault", "does not own the process of external target redis-1"},
			[]string{"counter on redis-setnx"}},
		{"kill of the node sharing a container's server refused", []string{"--redis", addr + "#container=cache", "--fault", "kill:resource@1s"}, exitUsage,
			[]string{`fault "kill:resource@1s" refused`, "resource runs on redis-1's server (container cache)", "aim it at redis-1"},
			[]string{"counter on redis-setnx"}},
		{"pause of the sharing node refused, dry run", []string{"--redis", addr + "#container=cache", "--fault", "pause:resource@1s", "--dry-run"}, exitUsage,
			[]string{`fault "pause:resource@1s" refused`, "would kill redis-1 too"}, nil},
		{"pause through nemesis refused", []string{"--redis", addr, "--nemesis", "pause", "--nemesis-interval", "1s"}, exitUsage,
			[]string{"refused", "pause is a process fault"}, nil},
		{"kill with a container accepted", []string{"--redis", addr + "#container=cache", "--fault", "kill:redis-1@1s", "--dry-run"}, exitOK,
			[]string{"kill/pause/restart through docker container cache", "faults possible: bandwidth", "kill", "resource -> proxy", "would kill redis-1 too"},
			[]string{"fault kill refused"}},
		{"bank's kill-after-prepare refused", []string{"--workload", "bank", "--postgres", "postgres://u@" + addr + "/a,postgres://u@" + addr + "/b",
			"--opt", "kill-after-prepare=pg-2"}, exitUsage,
			[]string{"kill-after-prepare=pg-2 refused", "does not own the process of external target pg-2"}, nil},
		{"latency accepted, kill listed as refused", []string{"--redis", addr, "--fault", "latency:redis-1=50ms@1s+1s", "--dry-run"}, exitOK,
			[]string{"keys under \"faultline:", "fault kill refused: faultline does not own the process of external target redis-1 (give container=NAME to let it use the Docker API)\n"},
			[]string{"external target resource"}}, // one reason per server: resource runs on redis-1's
		{"a node without a target refused", []string{"--redis", addr, "--impl", "redlock"}, exitUsage,
			[]string{"node redis-2: no external redis target (1 given)", "node redis-5:"}, []string{"on redlock"}},
		{"dry run names the bank's gids", []string{"--workload", "bank", "--postgres", "postgres://u@" + addr + "/a,postgres://u@" + addr + "/b",
			"--namespace", "ns1", "--dry-run"}, exitOK,
			[]string{"schema faultline_ns1 (must not exist)", "prepared transactions (two-phase implementations) named fl:ns1:…"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			impl := "redis-setnx"
			if slices.Contains(c.args, "bank") {
				impl = "2pc"
			}
			args := append([]string{"run", "--provider", "external", "--impl", impl, "--duration", "3s", "--out", t.TempDir()}, c.args...)
			code := run(context.Background(), args, &stdout, &stderr)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, stdout.String(), stderr.String())
			}
			for _, w := range c.output {
				if !strings.Contains(stdout.String()+stderr.String(), w) {
					t.Errorf("output lacks %q:\n%s%s", w, stdout.String(), stderr.String())
				}
			}
			for _, w := range c.absent {
				if strings.Contains(stdout.String()+stderr.String(), w) {
					t.Errorf("output has %q:\n%s%s", w, stdout.String(), stderr.String())
				}
			}
		})
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("%d connections to the server: refusals and dry runs must connect to nothing", n)
	}
}

func TestExternalTargetsFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("FL_TEST_RPW", "rsecret")
	t.Setenv("FL_TEST_PGPW", "pgsecret")
	jsonFile := write("t.json", `{"redis":[{"addr":"10.0.0.1:6379","password_env":"FL_TEST_RPW","container":"r1"}],
		"postgres":[{"dsn":"postgres://app:filepw@10.0.0.2:5432/app"}]}`)
	yamlFile := write("t.yaml", "redis:\n  - addr: 10.0.0.1:6379\n    password_env: FL_TEST_RPW\npostgres:\n  - dsn: postgres://app@10.0.0.2:5432/app\n    password_env: FL_TEST_PGPW\n    container: pg\n")
	dsnFile := write("dsns", "# comment\npostgres://app:linepw@10.0.0.3:5432/a\n\npostgres://app:linepw@10.0.0.4:5432/b#container=pgb\n")
	for _, c := range []struct {
		name string
		tf   targetFlags
		want []string // Public() plus the secret each target must carry
		err  string
	}{
		{"flags", targetFlags{redis: listFlag{vals: []string{"10.0.0.1:6379", "10.0.0.9:6380#container=c2"}}, redisPwEnv: "FL_TEST_RPW",
			postgres: listFlag{vals: []string{"postgres://app@10.0.0.2:5432/app"}}, pgPwEnv: "FL_TEST_PGPW"},
			[]string{"redis-1=10.0.0.1:6379 rsecret", "redis-2=10.0.0.9:6380 (container c2) rsecret", "pg-1=postgres://app@10.0.0.2:5432/app pgsecret"}, ""},
		{"json", targetFlags{targetsFile: jsonFile},
			[]string{"redis-1=10.0.0.1:6379 (container r1) rsecret", "pg-1=postgres://app@10.0.0.2:5432/app filepw"}, ""},
		{"yaml", targetFlags{targetsFile: yamlFile},
			[]string{"redis-1=10.0.0.1:6379 rsecret", "pg-1=postgres://app@10.0.0.2:5432/app (container pg) pgsecret"}, ""},
		{"dsn file", targetFlags{dsnFile: dsnFile},
			[]string{"pg-1=postgres://app@10.0.0.3:5432/a linepw", "pg-2=postgres://app@10.0.0.4:5432/b (container pgb) linepw"}, ""},
		{"password on the command line", targetFlags{postgres: listFlag{vals: []string{"postgres://app:pw@h:5432/app"}}}, nil, "a password on the command line"},
		{"unset variable", targetFlags{redis: listFlag{vals: []string{"h:6379"}}, redisPwEnv: "FL_TEST_UNSET_VAR"}, nil, "FL_TEST_UNSET_VAR: the environment variable is not set"},
		{"no port", targetFlags{redis: listFlag{vals: []string{"h"}}}, nil, "want host:port"},
		{"search_path", targetFlags{postgres: listFlag{vals: []string{"postgres://app@h:5432/app?search_path=x"}}}, nil, "remove search_path"},
		{"keyword dsn", targetFlags{postgres: listFlag{vals: []string{"host=h user=app"}}}, nil, "want a URL"},
		{"bad container", targetFlags{redis: listFlag{vals: []string{"h:1#cont"}}}, nil, "container=NAME"},
		{"unknown field", targetFlags{targetsFile: write("bad.json", `{"redis":[{"address":"h:1"}]}`)}, nil, "unknown field"},
		{"none", targetFlags{}, nil, "no external target"},
		{"same redis twice", targetFlags{redis: listFlag{vals: []string{"h:1", "h:2", "h:1"}}}, nil, "redis-1 and redis-3 are the same redis (h:1)"},
		{"same database twice", targetFlags{postgres: listFlag{vals: []string{"postgres://a@h:5432/db", "postgres://b@h:5432/db?sslmode=disable"}}}, nil, "pg-1 and pg-2 are the same postgres"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts, err := c.tf.targets()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				if strings.Contains(err.Error(), ":pw@") {
					t.Errorf("the error repeats the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tg := range ts {
				secret := tg.Password
				if tg.Kind == infra.Postgres {
					secret = strings.Split(strings.SplitN(tg.DSN, ":", 3)[2], "@")[0]
				}
				got = append(got, tg.Public()+" "+secret)
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("targets\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

// The recorded command keeps --postgres's user, host and database only.
func TestRedactArgs(t *testing.T) {
	got := strings.Join(redactArgs([]string{"--postgres", "postgres://a@h:1/d?sslmode=disable,postgres://b@h:2/e#container=x",
		"--postgres=postgres://c@h:3/f?application_name=z", "--redis", "h:4"}), " ")
	want := "--postgres postgres://a@h:1/d,postgres://b@h:2/e --postgres=postgres://c@h:3/f --redis h:4"
	if got != want {
		t.Errorf("redactArgs: %q, want %q", got, want)
	}
}
