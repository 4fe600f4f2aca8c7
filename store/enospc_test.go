package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// TestDiskFullFailsWritesAndRecovers: with the disk full, inserts fail with ENOSPC and write
// nothing; every job acknowledged before is still there; once space returns, writes work again
// without a restart.
func TestDiskFullFailsWritesAndRecovers(t *testing.T) {
	dir := tandemtest.Tmpfs(t, "8m")
	b := &bundle{path: filepath.Join(dir, "tandem.db"), clock: tandemtest.NewClock(time.Now())}
	s := openAt(t, b)
	ctx := context.Background()
	var acked []string
	for range 20 {
		acked = append(acked, insert(t, s, newJob("q", 0, time.Time{}))[0].ID)
	}
	filler := tandemtest.FillDisk(t, dir)
	// Writes now fail (the file must grow or sync new pages), with an error callers can see.
	var failed error
	for i := 0; i < 2000 && failed == nil; i++ {
		j := newJob("q", 0, time.Time{})
		j.Payload = []byte(`"` + strings.Repeat("x", 4000) + `"`)
		_, _, failed = s.Insert(ctx, []*jobs.Job{j}, nil)
		if failed == nil {
			acked = append(acked, j.ID)
		}
	}
	if failed == nil || !errors.Is(failed, syscall.ENOSPC) {
		t.Fatalf("inserts on a full disk: %v, want ENOSPC", failed)
	}
	for _, id := range acked {
		if _, err := s.Get(ctx, id); err != nil {
			t.Fatalf("acknowledged job %s lost after the full disk: %v", id, err)
		}
	}
	// Space returns: writes succeed again, without reopening.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, err := s.Insert(ctx, []*jobs.Job{newJob("q", 0, time.Time{})}, nil); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no recovery after space returned: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("file inconsistent after ENOSPC: %v", err)
	}
	if got := s.Waiting("q"); got != len(acked)+1 {
		t.Fatalf("waiting %d, want %d", got, len(acked)+1)
	}
}
