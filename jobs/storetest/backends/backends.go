// Package backends opens each jobs.Store implementation for tests: the conformance suite
// (package storetest) and the runtime's tests (package jobs) run on every one of them.
package backends

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/jobs/storetest"
	"github.com/tandem-run/tandem/store"
)

// BBoltOptions adjust the bbolt backend.
type BBoltOptions struct {
	// NoSync skips fsync (store.Options.NoSync): faster, for tests that do not crash the machine.
	NoSync bool
}

// BBolt is package store on a file in t.TempDir(). Each store is checked (store.Check: indexes,
// counters, bbolt's own check) and closed at the test's cleanup.
func BBolt(o BBoltOptions) storetest.Backend {
	return storetest.Backend{
		Name: "bbolt",
		New: func(t *testing.T) storetest.Opener {
			path := filepath.Join(t.TempDir(), "tandem.db")
			return func(t *testing.T, now func() time.Time) storetest.Store {
				t.Helper()
				s, err := store.Open(context.Background(), store.Options{Path: path, Now: now, NoSync: o.NoSync, Logger: quiet()})
				if err != nil {
					t.Fatalf("open %s: %v", path, err)
				}
				t.Cleanup(func() {
					if err := s.Check(); err != nil && !errors.Is(err, jobs.ErrStoreClosed) {
						t.Errorf("consistency check of %s: %v", path, err)
					}
					s.Close()
				})
				return s
			}
		},
		Commits: func(s storetest.Store) uint64 { return s.(*store.Store).CommitStats().Commits },
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
