package bench

import "errors"

// PhaseError is the failure of one implementation's phase (its start, its
// workers, its faults or its final probes). Run records it in the notes
// and goes on with the next implementation; the checks still run and the
// verdicts are written.
type PhaseError struct {
	Impl   string
	Mutant bool // the implementation is a deliberately broken one
	Err    error
}

func (e *PhaseError) Error() string { return e.Impl + ": " + e.Err.Error() }

func (e *PhaseError) Unwrap() error { return e.Err }

// OnlyMutantPhaseErrors says whether err (from Run) holds nothing but
// phase errors of mutants: a mutant whose recovery cannot finish (a lock
// that never expires, a coordinator that never resolves) is the mutant
// doing what it was made to do, and its verdicts were written. A nil err
// is false.
func OnlyMutantPhaseErrors(err error) bool {
	if err == nil {
		return false
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var pe *PhaseError
		if !errors.As(e, &pe) || !pe.Mutant {
			return false
		}
	}
	return true
}
