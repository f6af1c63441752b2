package txn

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/faultline-dev/faultline/internal/option"
)

// Services an implementation needs the harness to run once per phase,
// shared by every client (Info.Services). An implementation with services
// is opened once as that service, and every client process uses it: the
// clients are the application's processes, the relay and the consumer
// are infrastructure.
const (
	// ServiceRelay publishes committed outbox rows to the stream.
	ServiceRelay = "relay"
	// ServiceConsumer applies the stream's messages; before the final
	// Recover the harness lets it drain (the outbox tables, the stream's
	// consumer group) so that closing it cannot leave a credit
	// unacknowledged.
	ServiceConsumer = "consumer"
)

// Bank checks beyond the common ones (conservation, no negative balance,
// nothing prepared or frozen left) that an implementation asks for
// (Info.Checks); the names are bench/checker's.
const (
	CheckTCCAnomalies   = "tcc-anomalies"
	CheckOutboxDelivery = "outbox-delivery"
)

// Options an implementation may accept (Info.Options, --txn-opt k=v):
// each sets a typed field of Options (see Options.Apply).
var (
	OptCrashAt = option.Spec{Name: "crash-at", Kind: option.Choice, Choices: crashPointNames(),
		Doc: "2pc coordinator crash point for the chosen transfers"}
	OptLateTry = option.Spec{Name: "late-try", Kind: option.Choice, Choices: []string{BranchDebit, BranchCredit},
		Doc: "tcc: hold back the try of this branch past its cancel (empty cancel, then hanging try)"}
	OptDupConfirm = option.Spec{Name: "dup-confirm", Kind: option.Bool, Default: "false", Doc: "tcc: send every confirm twice"}
	OptDupCancel  = option.Spec{Name: "dup-cancel", Kind: option.Bool, Default: "false", Doc: "tcc: send every cancel twice"}
	OptLostReply  = option.Spec{Name: "lost-confirm-reply", Kind: option.Bool, Default: "false",
		Doc: "tcc: lose the first confirm reply of each branch; the coordinator retries"}
	OptRelayCrash = option.Spec{Name: "relay-crash", Kind: option.Int, Min: 0, Max: 1000, Default: "0",
		Doc: "outbox: the relay crashes N times between publish and mark"}
)

func crashPointNames() []string {
	out := make([]string, len(CrashPoints))
	for i, p := range CrashPoints {
		out[i] = string(p)
	}
	return out
}

var (
	twoPCOptions   = option.Set{OptCrashAt}
	tccOptions     = option.Set{OptLateTry, OptDupConfirm, OptDupCancel, OptLostReply}
	outboxOptions  = option.Set{OptRelayCrash}
	outboxServices = []string{ServiceRelay, ServiceConsumer}
)

// Apply sets the typed fields of o from params (the --txn-opt values
// named by the Opt… specs), after checking each against its spec; other
// keys are left in Params for the implementation. It reports every bad
// value.
func (o *Options) Apply(params map[string]string) error {
	var errs []error
	for k, v := range params {
		v = strings.TrimSpace(v)
		spec, ok := option.Set{OptCrashAt, OptLateTry, OptDupConfirm, OptDupCancel, OptLostReply, OptRelayCrash}.Lookup(k)
		if !ok {
			continue
		}
		if err := spec.Check(v); err != nil {
			errs = append(errs, fmt.Errorf("txn option %s=%q: %w", k, v, err))
			continue
		}
		b, _ := strconv.ParseBool(v)
		switch k {
		case OptCrashAt.Name:
			o.CrashAt = CrashPoint(v)
		case OptLateTry.Name:
			o.TCC.LateTry = v
		case OptDupConfirm.Name:
			o.TCC.DuplicateConfirm = b
		case OptDupCancel.Name:
			o.TCC.DuplicateCancel = b
		case OptLostReply.Name:
			o.TCC.LostConfirmReply = b
		case OptRelayCrash.Name:
			n, _ := strconv.Atoi(v)
			o.Outbox.CrashRelayAfterPublish = n
		}
	}
	return errors.Join(errs...)
}

// Injects says whether o injects a fault into the transfers Match selects
// (a crash point or a TCC anomaly; a relay crash is the relay's, not a
// transfer's).
func (o Options) Injects() bool {
	return o.CrashAt != "" || o.TCC != TCCFaults{}
}
