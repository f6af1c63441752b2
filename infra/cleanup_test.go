package infra

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childReport is what the cleanup child prints after "READY ": everything
// it started, so the parent can check that all of it is gone.
type childReport struct {
	Provider   string   `json:"provider"`
	PIDs       []int    `json:"pids,omitempty"`       // local: server processes
	Dirs       []string `json:"dirs,omitempty"`       // local: temp dirs
	Containers []string `json:"containers,omitempty"` // docker: container ids
	Networks   []string `json:"networks,omitempty"`   // docker topologies: network ids
}

// cleanupCase is one provider's row of the SIGINT cleanup test. The generic
// checks (exit status 130, none of the reported processes, no reported
// dir, nothing left in the child's TMPDIR) run for every row; check adds the
// provider's own (e.g. no labelled container for docker).
type cleanupCase struct {
	provider string
	topology Topology           // "" = one Redis and one PostgreSQL node
	skip     func(t *testing.T) // skips the row when the provider cannot run here
	check    func(t *testing.T, r childReport)
}

var cleanupCases = []cleanupCase{
	{provider: "local"},
}

// cleanupChild runs in the re-executed test binary: it installs the signal
// handler, starts an environment, reports it and waits for the signal.
func cleanupChild(provider string) int {
	topo := Topology(os.Getenv(childTopologyEnvVar))
	stop := CleanupOnSignal(context.Background())
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	spec := Spec{Nodes: Nodes(1, 1), Provider: provider}
	if topo != TopologyNone {
		spec = Spec{Topology: topo, Provider: provider}
	}
	env, err := Up(ctx, spec)
	if err != nil {
		fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " | "))
		return 2
	}
	r := childReport{Provider: env.Provider()}
	for _, n := range env.Nodes() {
		srv := n.(*node).srv
		if s, ok := srv.(interface{ pids() []int }); ok {
			r.PIDs = append(r.PIDs, s.pids()...)
		}
		if s, ok := srv.(interface{ tempDirs() []string }); ok {
			r.Dirs = append(r.Dirs, s.tempDirs()...)
		}
		if s, ok := srv.(interface{ containerID() string }); ok {
			r.Containers = append(r.Containers, s.containerID())
		}
	}
	if pn, ok := env.peers.(*dockerPeerNet); ok {
		r.Containers = append(r.Containers, pn.proxy.containerID())
		r.Networks = append(r.Networks, pn.netID)
	}
	b, _ := json.Marshal(r)
	fmt.Println("READY " + string(b))
	<-time.After(2 * time.Minute) // the parent signals long before
	fmt.Println("ERROR no signal came")
	return 3
}

// TestSIGINTCleanup starts an environment in a child process, sends it
// SIGINT and checks that nothing it started survives.
func TestSIGINTCleanup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers in a subprocess")
	}
	for _, tc := range cleanupCases {
		name := tc.provider
		if tc.topology != TopologyNone {
			name += "-" + string(tc.topology)
		}
		t.Run(name, func(t *testing.T) {
			if tc.skip != nil {
				tc.skip(t)
			}
			r := runCleanupChild(t, tc.provider, tc.topology)
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func runCleanupChild(t *testing.T, provider string, topo Topology) childReport {
	tmp := openTempDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnvVar+"="+provider, childTopologyEnvVar+"="+string(topo), "TMPDIR="+tmp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	defer cmd.Process.Kill() // if we fail before the child exits

	var r childReport
	deadline := time.After(90 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("child exited before READY; stderr:\n%s", stderr.String())
			}
			if rest, ok := strings.CutPrefix(l, "READY "); ok {
				if err := json.Unmarshal([]byte(rest), &r); err != nil {
					t.Fatal(err)
				}
				break wait
			}
			if strings.HasPrefix(l, "ERROR") {
				t.Fatalf("child: %s", l)
			}
		case <-deadline:
			t.Fatalf("no READY from the child in 90s; stderr:\n%s", stderr.String())
		}
	}
	t.Logf("child ready: %+v", r)
	if r.Provider != provider {
		t.Errorf("child used provider %q, want %q", r.Provider, provider)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range lines { // drain
		}
	}()
	select {
	case err = <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("child did not exit within 60s of SIGINT; stderr:\n%s", stderr.String())
	}
	t.Logf("child exited %v after SIGINT in %v", err, time.Since(start))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("child exit: %v, want status 130; stderr:\n%s", err, stderr.String())
	}
	assertGone(t, r.PIDs, r.Dirs)
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("child left %v in its TMPDIR", left)
	}
	return r
}
