// Command river runs issue 15's J1 on River (riverqueue/river), the comparison bench/postgres.sh
// prints beside tandem on the same Postgres: it migrates River's schema (rivermigrate), then
// inserts -n noop jobs from -inserters goroutines in this process, one Insert a job (as one
// POST /v1/jobs is one job), while a River client works them with MaxWorkers -workers and
// FetchCooldown -cooldown. It prints one JSON line: the enqueue rate (jobs inserted over the time
// the inserts took) and the end-to-end rate (jobs over the time from the first insert until River
// reported the last one completed, which it does after the completion is written to Postgres).
//
// It is a module of its own (bench/river/go.mod) so that River never becomes a dependency of
// tandem, and `go test ./...` at the root does not descend into it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// noopArgs is a job that does nothing, tandem's "noop" kind.
type noopArgs struct{}

// Kind names the job kind in river_job.
func (noopArgs) Kind() string { return "noop" }

// noopWorker works noop jobs by returning at once.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

// Work returns nil: the job succeeds.
func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

func main() {
	url := flag.String("url", os.Getenv("DATABASE_URL"), "Postgres connection URL (default $DATABASE_URL)")
	n := flag.Int("n", 20000, "jobs to insert and work")
	inserters := flag.Int("inserters", 8, "goroutines inserting, one job an Insert")
	workers := flag.Int("workers", 2, "MaxWorkers of the default queue (tandem's jobs.concurrency)")
	cooldown := flag.Duration("cooldown", time.Millisecond, "FetchCooldown")
	maxDur := flag.Duration("max", 5*time.Minute, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *maxDur)
	defer cancel()
	out, err := run(ctx, *url, *n, *inserters, *workers, *cooldown)
	if err != nil {
		fmt.Fprintln(os.Stderr, "river:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "river:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url string, n, inserters, workers int, cooldown time.Duration) (map[string]any, error) {
	if url == "" {
		return nil, errors.New("no -url and no $DATABASE_URL")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse -url: %w", err)
	}
	// Room for every inserter, the workers, the producer's fetches, the completer and LISTEN.
	cfg.MaxConns = int32(inserters + workers + 8)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	driver := riverpgxv5.New(pool)

	migrator, err := rivermigrate.New(driver, nil)
	if err != nil {
		return nil, fmt.Errorf("rivermigrate: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("migrate up: %w", err)
	}
	// A run starts from an empty table, so the figures never include an earlier run's jobs.
	if _, err := pool.Exec(ctx, "TRUNCATE river_job"); err != nil {
		return nil, fmt.Errorf("truncate river_job: %w", err)
	}

	w := river.NewWorkers()
	if err := river.AddWorkerSafely(w, noopWorker{}); err != nil {
		return nil, fmt.Errorf("add worker: %w", err)
	}
	client, err := river.NewClient(driver, &river.Config{
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers:       w,
		FetchCooldown: cooldown,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	// A channel as large as the run: River drops events a full subscription channel cannot take.
	completed, unsubscribe := client.SubscribeConfig(&river.SubscribeConfig{Kinds: []river.EventKind{river.EventKindJobCompleted}, ChanSize: n + 1})
	defer unsubscribe()
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Stop(stopCtx)
	}()

	var next, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range inserters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := client.Insert(ctx, noopArgs{}, nil); err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	inserted := time.Since(start)
	if f := failed.Load(); f > 0 {
		return nil, fmt.Errorf("%d of %d inserts failed, the first: %w", f, n, firstErr)
	}
	for done := 0; done < n; done++ {
		select {
		case <-completed:
		case <-ctx.Done():
			return nil, fmt.Errorf("only %d of %d jobs completed: %w", done, n, ctx.Err())
		}
	}
	e2e := time.Since(start)
	// The events say it; the table must agree.
	var inDB int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE state = 'completed'").Scan(&inDB); err != nil {
		return nil, fmt.Errorf("count completed: %w", err)
	}
	if inDB != n {
		return nil, fmt.Errorf("%d completion events but %d completed rows", n, inDB)
	}
	return map[string]any{
		"system": "river v0.51.2", "jobs": n, "inserters": inserters, "max_workers": workers,
		"fetch_cooldown_ms": cooldown.Seconds() * 1000,
		"enqueue_seconds":   inserted.Seconds(), "enqueue_rate": float64(n) / inserted.Seconds(),
		"end_to_end_seconds": e2e.Seconds(), "end_to_end_rate": float64(n) / e2e.Seconds(),
	}, nil
}
