package postgres

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
)

// TestLeaseWalksTheReadyIndex: the lease reads the best ready jobs off tandem_jobs_ready in its
// order and stops at the limit, with no sort. It once ordered by the output column id (text),
// which no index has, so every lease read and sorted the queue's whole backlog: 8-15 ms a lease
// at a 3,000-job backlog, the largest cost of a J1 run on Postgres.
func TestLeaseWalksTheReadyIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{URL: tandemtest.Postgres(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	batch := make([]*jobs.Job, 3000)
	for i := range batch {
		batch[i] = &jobs.Job{Kind: "noop", Queue: "q", State: jobs.StateReady, MaxAttempts: 1, RunAt: time.Now()}
	}
	if _, _, err := s.Insert(ctx, batch, nil); err != nil {
		t.Fatal(err)
	}
	// As a busy queue's table is between autovacuum's analyses; planned for the rows there are.
	if _, err := s.Pool().Exec(ctx, "ANALYZE tandem_jobs"); err != nil {
		t.Fatal(err)
	}
	var plan []byte
	err = s.Pool().QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+leaseUncapped, "q", 64, []string{}).Scan(&plan)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		name, _ := n["Node Type"].(string)
		if idx, ok := n["Index Name"].(string); ok {
			name += " " + idx
		}
		nodes = append(nodes, name)
		children, _ := n["Plans"].([]any)
		for _, c := range children {
			walk(c.(map[string]any))
		}
	}
	var top []struct {
		Plan map[string]any `json:"Plan"`
	}
	if err := json.Unmarshal(plan, &top); err != nil || len(top) != 1 {
		t.Fatalf("plan %s: %v", plan, err)
	}
	walk(top[0].Plan)
	joined := strings.Join(nodes, " > ")
	if strings.Contains(joined, "Sort") || !strings.Contains(joined, "tandem_jobs_ready") {
		t.Fatalf("the lease's plan is %s; want a walk of tandem_jobs_ready under the limit, no sort", joined)
	}
}
