package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/store/postgres"
)

// vacuums reads how often tandem_jobs was vacuumed by hand (not by autovacuum).
func vacuums(t *testing.T, url string) int64 {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int64
	if err := c.QueryRow(ctx, `SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'tandem_jobs'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestVacuumAfterVacuumEveryRows: once a process wrote VacuumEvery rows, its poll vacuums the jobs
// table; with VacuumEvery negative, never.
func TestVacuumAfterVacuumEveryRows(t *testing.T) {
	for _, tc := range []struct {
		every int
		want  bool
	}{{50, true}, {-1, false}} {
		url := tandemtest.Postgres(t)
		s := open(t, url, func(o *postgres.Options) { o.VacuumEvery = tc.every })
		js := make([]*jobs.Job, 100)
		for i := range js {
			js[i] = newJob("q")
		}
		if _, _, err := s.Insert(context.Background(), js, nil); err != nil {
			t.Fatal(err)
		}
		if tc.want {
			tandemtest.WaitFor(t, "a VACUUM of tandem_jobs", func() bool { return vacuums(t, url) > 0 })
			continue
		}
		time.Sleep(500 * time.Millisecond) // five polls
		if n := vacuums(t, url); n != 0 {
			t.Fatalf("VacuumEvery -1: %d vacuums, want none", n)
		}
	}
}
