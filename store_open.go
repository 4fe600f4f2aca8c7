package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/metrics"
	"github.com/tandem-run/tandem/store"
	"github.com/tandem-run/tandem/store/postgres"
)

// openedStore is the job store serve opened, whichever the backend.
type openedStore struct {
	// store is the backend itself, never wrapped: the runtime asks it for jobs.Shared and
	// jobs.TxStore, which an embedding struct would hide.
	store jobs.Store
	close func() error
	// where names it in logs: the bbolt file, or the Postgres URL with its password hidden.
	where string
	// health is the systemd watchdog's check: a bbolt file that stops answering (a hung disk)
	// is this process's fault, and a restart may cure it. A Postgres server that stops answering
	// is not: restarting every replica would not bring it back, so readiness (503 until the
	// runtime's ping succeeds) is what reports it, and the watchdog checks nothing (nil).
	health func(context.Context) error
}

// openStore opens store.backend: the bbolt file exactly as before issue 15, or the Postgres
// database (pending migrations applied under an advisory lock, so replicas starting together
// apply them once).
func openStore(ctx context.Context, cfg StoreConfig, log *slog.Logger, mx *metrics.Metrics) (*openedStore, error) {
	if cfg.Backend == "postgres" {
		where := redactURL(cfg.URL)
		st, err := postgres.Open(ctx, postgres.Options{URL: cfg.URL, Logger: log, MaxConns: cfg.MaxConns, ConnectTimeout: cfg.OpenTimeout,
			OnCommit: mx.ObserveCommit})
		if errors.Is(err, postgres.ErrSchemaNewer) {
			return nil, fmt.Errorf("open store %s: %w; run the newer tandem, or restore the database from before its migration", where, err)
		}
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", where, err)
		}
		return &openedStore{store: st, close: st.Close, where: where}, nil
	}
	st, err := store.Open(ctx, store.Options{
		Path: cfg.Path, OpenTimeout: cfg.OpenTimeout, NoSync: cfg.Sync == "none", Logger: log,
		OnCommit: mx.ObserveCommit,
	})
	if err != nil {
		if errors.Is(err, store.ErrCorrupt) {
			return nil, damaged(cfg.Path, err) // the error names the file already
		}
		return nil, fmt.Errorf("open store %s: %w", cfg.Path, err)
	}
	return &openedStore{store: st, close: st.Close, where: cfg.Path, health: st.Ping}, nil
}

// redactURL shows a Postgres URL in a log line or `tandem config` with its password hidden.
var redactURL = postgres.Redact
