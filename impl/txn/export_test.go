package txn

import "context"

// New2PCIgnoringConflict is a 2pc whose coordinator ignores a conflicting
// decision row (Recover's abort) and commits its debit anyway: the mutant
// TestTwoPCRecoverDecidesAbortFirst must catch.
func New2PCIgnoringConflict(ctx context.Context, ep Endpoints, opt Options) (Transferer, error) {
	tr, err := new2PC(true)(ctx, ep, opt)
	if err == nil {
		tr.(*twoPC).ignoreConflict = true
	}
	return tr, err
}
