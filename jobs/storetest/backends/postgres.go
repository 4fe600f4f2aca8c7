package backends

import (
	"context"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs/storetest"
	"github.com/tandem-run/tandem/store/postgres"
)

// Postgres is package store/postgres on a fresh database of the test's own (tandemtest.Postgres:
// the test binary's TestMain runs tandemtest.RunWithPostgres). Without Postgres installed the
// test skips, or fails when CI=true. Each store is closed at the test's cleanup, before the
// database is dropped.
func Postgres() storetest.Backend {
	return storetest.Backend{
		Name: "postgres",
		New: func(t *testing.T) storetest.Opener {
			url := tandemtest.Postgres(t)
			return func(t *testing.T, now func() time.Time) storetest.Store {
				t.Helper()
				s, err := postgres.Open(context.Background(), postgres.Options{URL: url, Now: now, Logger: quiet()})
				if err != nil {
					t.Fatalf("open %s: %v", postgres.Redact(url), err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
		},
	}
}
