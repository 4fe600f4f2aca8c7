package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tandem-run/tandem/internal/tandemtest"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store"
)

// sharedStore is a bbolt store that says it is shared (jobs.Shared), with one more replica
// ("peer") in its node list and a switch that makes it fail the way a Postgres store does when
// its server went away: Ping and Insert return a real pgx connection error. It lets the server
// tests check readiness, /admin/nodes and the 503s of a shared store without a Postgres server;
// the root package's tests do it against a real one.
type sharedStore struct {
	*store.Store
	down    atomic.Pointer[error]
	changes chan struct{}

	mu    sync.Mutex
	nodes map[string]jobs.Node
}

func (s *sharedStore) err() error {
	if p := s.down.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *sharedStore) Ping(ctx context.Context) error {
	if err := s.err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return s.Store.Ping(ctx)
}

func (s *sharedStore) Insert(ctx context.Context, js []*jobs.Job, maxPending func(string) int) ([]*jobs.Job, []bool, error) {
	if err := s.err(); err != nil {
		return nil, nil, fmt.Errorf("insert jobs: %w", err)
	}
	return s.Store.Insert(ctx, js, maxPending)
}

func (s *sharedStore) Renew(context.Context, []string, time.Time) ([]string, error) { return nil, nil }

func (s *sharedStore) Heartbeat(_ context.Context, n jobs.Node, _ time.Duration) (bool, error) {
	if err := s.err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n.Heartbeat, n.Leader = time.Now(), false // the peer leads
	s.nodes[n.Name] = n
	return false, nil
}

func (s *sharedStore) Nodes(_ context.Context, since time.Time) ([]jobs.Node, error) {
	if err := s.err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []jobs.Node
	for _, n := range s.nodes {
		if !n.Heartbeat.Before(since) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *sharedStore) Leave(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.nodes, name)
	return nil
}

func (s *sharedStore) Changes() <-chan struct{} { return s.changes }

// pgDown is the error pgx returns when nothing listens where the database should be.
func pgDown(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := fmt.Sprintf("postgres://tandem:pw@127.0.0.1:%d/tandem?sslmode=disable&connect_timeout=2", tandemtest.FreePort(t))
	conn, err := pgconn.Connect(ctx, url)
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a port nothing listens on")
	}
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("want a *pgconn.ConnectError, got %T: %v", err, err)
	}
	return err
}

// setupShared is setup with the jobs runtime on a sharedStore, node "web-1", whose peer "web-0"
// leads and runs 3 jobs.
func setupShared(t *testing.T) (*bundle, *sharedStore) {
	t.Helper()
	logger := slog.New(slog.NewJSONHandler(&tandemtest.SyncBuffer{}, nil))
	bb, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "db"), NoSync: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	st := &sharedStore{Store: bb, changes: make(chan struct{}, 1), nodes: map[string]jobs.Node{
		"web-0": {Name: "web-0", Version: "v1.2.0", StartedAt: now.Add(-time.Hour), Heartbeat: now.Add(time.Hour), Leader: true, Running: 3,
			Pools: map[string]jobs.NodePool{"http": {Size: 9, Running: 1}, "jobs": {Size: 4, Running: 3}}},
	}}
	jp, _ := pool.New(pool.Options{Name: "jobs", Size: 2, Backlog: 1000, Logger: logger})
	rt, err := jobs.New(jobs.Options{Store: st, Pool: jp, Logger: logger, Node: "web-1", Version: "test", RescueAfter: 300 * time.Millisecond,
		NodePools: func() map[string]jobs.NodePool {
			return map[string]jobs.NodePool{"http": {Size: 4, Running: 0}, "jobs": {Size: jp.Stats().Size, Running: jp.Stats().Running}}
		}})
	if err != nil {
		t.Fatal(err)
	}
	_ = rt.RegisterFunc("noop", func(context.Context, *jobs.Job) (any, error) { return nil, nil })
	if err := rt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after setup's own cleanup, which stops the server first
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Stop(ctx)
		_ = jp.Release(ctx)
		bb.Close()
	})
	b := setup(t, func(o *Options) { o.Jobs = rt }, nil)
	return b, st
}

// TestAdminNodes: GET /admin/nodes lists every live replica of a shared store, sorted by name,
// with its pools, running jobs and leadership; on a bbolt file, this process alone, leading.
func TestAdminNodes(t *testing.T) {
	type nodes struct {
		Nodes []struct {
			Name        string    `json:"name"`
			Version     string    `json:"version"`
			StartedAt   time.Time `json:"started_at"`
			HeartbeatAt time.Time `json:"heartbeat_at"`
			Leader      bool      `json:"leader"`
			Running     int       `json:"running"`
			Pools       map[string]struct {
				Size    int `json:"size"`
				Running int `json:"running"`
			} `json:"pools"`
		} `json:"nodes"`
		Shared bool `json:"shared"`
	}
	get := func(t *testing.T, b *bundle) nodes {
		t.Helper()
		code, _, body := b.do(t, "GET", b.adminURL+"/admin/nodes", "", nil)
		var n nodes
		if err := json.Unmarshal([]byte(body), &n); code != http.StatusOK || err != nil {
			t.Fatalf("GET /admin/nodes: %d %s (%v)", code, body, err)
		}
		return n
	}

	t.Run("bbolt", func(t *testing.T) {
		b := setup(t, nil, nil)
		n := get(t, b)
		if n.Shared || len(n.Nodes) != 1 {
			t.Fatalf("bbolt: want one node, shared false: %+v", n)
		}
		me := n.Nodes[0]
		if me.Name != jobs.DefaultNode() || !me.Leader || me.StartedAt.IsZero() || me.HeartbeatAt.IsZero() || me.Pools["jobs"].Size != 2 {
			t.Fatalf("bbolt: this process: %+v", me)
		}
	})

	t.Run("shared", func(t *testing.T) {
		b, _ := setupShared(t)
		var n nodes
		tandemtest.WaitFor(t, "this node's first heartbeat", func() bool {
			n = get(t, b)
			return len(n.Nodes) == 2
		})
		if !n.Shared || n.Nodes[0].Name != "web-0" || n.Nodes[1].Name != "web-1" {
			t.Fatalf("want web-0 and web-1, shared: %+v", n)
		}
		peer, me := n.Nodes[0], n.Nodes[1]
		if !peer.Leader || peer.Running != 3 || peer.Version != "v1.2.0" || peer.Pools["http"].Size != 9 || peer.Pools["jobs"].Running != 3 {
			t.Errorf("peer: %+v", peer)
		}
		if me.Leader || me.Version != "test" || me.Pools["jobs"].Size != 2 || me.Pools["http"].Size != 4 || me.HeartbeatAt.IsZero() {
			t.Errorf("this node: %+v", me)
		}
	})
}

// TestSharedStoreDown: while the shared store does not answer, /readyz is 503 with a JSON error,
// an enqueue is 503 with Retry-After (a pgx connection error is the store's, not the client's),
// and neither answer on the main listener names the database's address; once the store answers
// again, readiness is 200 and enqueues work, with nothing restarted.
func TestSharedStoreDown(t *testing.T) {
	b, st := setupShared(t)
	ready := func() (int, string) {
		code, _, body := b.do(t, "GET", b.base+"/readyz", "", nil)
		return code, body
	}
	if code, body := ready(); code != http.StatusOK {
		t.Fatalf("/readyz before: %d %s", code, body)
	}
	down := pgDown(t)
	st.down.Store(&down)

	var body string
	tandemtest.WaitFor(t, "/readyz 503 after the store went away", func() bool {
		var code int
		code, body = ready()
		return code == http.StatusServiceUnavailable
	})
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, "job store") || strings.Contains(body, "127.0.0.1") {
		t.Errorf("/readyz while down: %s", body)
	}

	code, hdr, body := b.do(t, "POST", b.base+"/v1/jobs", `{"kind":"noop"}`, jsonHdr)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != storeRetryAfter {
		t.Fatalf("enqueue while down: %d Retry-After %q %s", code, hdr.Get("Retry-After"), body)
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.RequestID == "" || strings.Contains(body, "127.0.0.1") || strings.Contains(body, "dial") {
		t.Errorf("enqueue while down, main listener: %s (want a generic message and a request id)", body)
	}
	// The operator's listener says why.
	code, _, body = b.do(t, "POST", b.adminURL+"/admin/api/v1/jobs", `{"kind":"noop"}`, jsonHdr)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "failed to connect") {
		t.Errorf("enqueue while down, admin listener: %d %s", code, body)
	}
	if code, _, body := b.do(t, "GET", b.adminURL+"/admin/nodes", "", nil); code != http.StatusServiceUnavailable {
		t.Errorf("/admin/nodes while down: %d %s", code, body)
	}

	st.down.Store(nil)
	tandemtest.WaitFor(t, "/readyz 200 after the store came back", func() bool {
		code, _ := ready()
		return code == http.StatusOK
	})
	code, _, body = b.do(t, "POST", b.base+"/v1/jobs", `{"kind":"noop"}`, jsonHdr)
	if code != http.StatusCreated {
		t.Fatalf("enqueue after recovery: %d %s", code, body)
	}
}

// TestJobShowsAttemptedBy: a job that ran names the node that ran it; one that has not, [].
func TestJobShowsAttemptedBy(t *testing.T) {
	b := setup(t, nil, nil)
	type job struct {
		ID          string     `json:"id"`
		State       jobs.State `json:"state"`
		AttemptedBy []string   `json:"attempted_by"`
	}
	enqueue := func(body string) job {
		code, _, raw := b.do(t, "POST", b.base+"/v1/jobs", body, jsonHdr)
		var j job
		if err := json.Unmarshal([]byte(raw), &j); code != http.StatusCreated || err != nil {
			t.Fatalf("enqueue: %d %s", code, raw)
		}
		return j
	}
	later := enqueue(`{"kind":"noop","delay":"1h"}`)
	if later.AttemptedBy == nil || len(later.AttemptedBy) != 0 {
		t.Errorf("a job not yet run: attempted_by %#v, want []", later.AttemptedBy)
	}
	ran := enqueue(`{"kind":"noop"}`)
	var got job
	tandemtest.WaitFor(t, "the job to succeed", func() bool {
		_, _, raw := b.do(t, "GET", b.base+"/v1/jobs/"+ran.ID, "", nil)
		_ = json.Unmarshal([]byte(raw), &got)
		return got.State == jobs.StateSucceeded
	})
	if len(got.AttemptedBy) != 1 || got.AttemptedBy[0] != jobs.DefaultNode() {
		t.Errorf("attempted_by %q, want [%s]", got.AttemptedBy, jobs.DefaultNode())
	}
}
