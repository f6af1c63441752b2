package bench

import (
	"errors"
	"fmt"
	"testing"
)

func TestOnlyMutantPhaseErrors(t *testing.T) {
	mutant := &PhaseError{Impl: "redis-seed-literal", Mutant: true, Err: errors.New("leaked-locks probe: key never expires")}
	correct := &PhaseError{Impl: "redis-setnx", Err: errors.New("start phase: refused")}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"one mutant", mutant, true},
		{"two mutants joined", errors.Join(mutant, mutant), true},
		{"a correct implementation's phase", correct, false},
		{"mutant and correct", errors.Join(mutant, correct), false},
		{"mutant and interrupted", errors.Join(mutant, fmt.Errorf("%w", errInterrupted)), false},
		{"save failed", errors.Join(mutant, errors.New("results: write")), false},
	}
	for _, c := range cases {
		if got := OnlyMutantPhaseErrors(c.err); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if got := mutant.Error(); got != "redis-seed-literal: leaked-locks probe: key never expires" {
		t.Errorf("message %q", got)
	}
}
