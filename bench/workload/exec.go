package workload

import (
	"fmt"
	"strings"

	"github.com/faultline-dev/faultline/impl/lock"
	"github.com/faultline-dev/faultline/impl/txn"
)

// IsExec says whether name is an exec:PATH[:NAME] implementation: an
// executable speaking faultline's process protocol (docs/protocol.md),
// which no workload lists but every workload of its declared kind runs.
func IsExec(name string) bool { return strings.HasPrefix(name, lock.ExecPrefix) }

// Impl returns what wl knows of implementation name: a listed one, or an
// exec: one whose declared kind fits wl (the executable is started once to
// read its declaration).
func Impl(wl Workload, name string) (ImplInfo, error) {
	for _, i := range wl.Impls() {
		if i.Name == name {
			return i, nil
		}
	}
	if !IsExec(name) {
		return ImplInfo{}, fmt.Errorf("unknown implementation %q for workload %s (known: %s; or exec:PATH[:NAME])",
			name, wl.Name(), strings.Join(ImplNames(wl), ", "))
	}
	if _, ok := wl.(*bankWorkload); ok {
		i, err := txn.Lookup(name)
		if err != nil {
			return ImplInfo{}, err
		}
		return ImplInfo{Name: i.Name, Doc: i.Doc, Mutant: i.Mutant, Options: i.Options}, nil
	}
	i, err := lock.Lookup(name)
	if err != nil {
		return ImplInfo{}, err
	}
	return ImplInfo{Name: i.Name, Doc: i.Doc, Mutant: i.Mutant}, nil
}
