package jobs_test

import (
	"testing"

	"github.com/tandem-run/tandem/jobs/storetest"
	"github.com/tandem-run/tandem/jobs/storetest/backends"
)

// bbolt is the store the runtime's tests that are not about the store run on (the pool's checks,
// pinning): package store's file, without fsync, since no test here crashes the machine.
func bbolt() storetest.Backend { return backends.BBolt(backends.BBoltOptions{NoSync: true}) }

// eachBackend runs test once on every store backend, as a subtest named after it, so each
// semantic test of the runtime holds for each store: bbolt always, Postgres when the machine has
// it (tandemtest.Postgres skips without it, or fails with CI=true).
func eachBackend(t *testing.T, test func(t *testing.T, be storetest.Backend)) {
	t.Helper()
	for _, be := range []storetest.Backend{bbolt(), backends.Postgres()} {
		t.Run(be.Name, func(t *testing.T) { test(t, be) })
	}
}
