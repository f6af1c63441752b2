package txn_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/impl/txn"
)

// TestExecCoordinatorLogsToRunDir: an exec: coordinator's stderr lands in
// the run directory (LogDir/exec/NAME.coordinatorN.stderr.log), as an exec:
// lock process's does, and one transfer through it commits.
func TestExecCoordinatorLogsToRunDir(t *testing.T) {
	needEnv(t)
	ep := testEnv.direct
	lay := bank(t, ep)
	dir := t.TempDir()
	name := "exec:testdata/exec/noisy_twopc.sh"
	tr := newTransferer(t, name, ep, txn.Options{LogDir: dir})
	var l ledger
	out, err := l.do(ctxFor(t, 20*time.Second), tr, randomTransfer(rand.New(rand.NewPCG(1, 2)), "log-1", false))
	if err != nil {
		t.Fatalf("transfer through %s: %v", name, err)
	}
	_, vs := check(t, name, tr, ep, lay, &l)
	requireValid(t, vs)
	t.Logf("transfer: %+v", out)
	logs, err := filepath.Glob(filepath.Join(dir, "exec", "noisy_twopc.coordinator*.stderr.log"))
	if err != nil || len(logs) != 1 {
		t.Fatalf("want one coordinator log under %s/exec, got %v (%v)", dir, logs, err)
	}
	b, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "noisy coordinator") {
		t.Fatalf("%s does not hold the process's stderr: %q", logs[0], b)
	}
}
