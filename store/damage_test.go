package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/jobs"

	bolt "go.etcd.io/bbolt"
)

// seededFile writes a real database of n jobs, the i-th with the payload {"marker":"m<i>"}, three
// of them leased, and returns its path and the jobs.
func seededFile(t *testing.T, n int) (string, []*jobs.Job) {
	t.Helper()
	s, b := setup(t)
	js := make([]*jobs.Job, n)
	for i := range js {
		js[i] = newJob("q", 0, time.Time{})
		js[i].Payload = []byte(fmt.Sprintf(`{"marker":"m%05d"}`, i))
	}
	insert(t, s, js...)
	if _, err := s.Lease(context.Background(), "q", 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return b.path, js
}

// rootPage returns the page number of a bucket's root, read with bbolt itself.
func rootPage(t *testing.T, path string, bucket []byte) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var pg int
	_ = db.View(func(tx *bolt.Tx) error { pg = int(tx.Bucket(bucket).RootPage()); return nil })
	if pg == 0 {
		t.Fatalf("bucket %s is inline", bucket)
	}
	return pg
}

// garble overwrites bytes 16..80 of page pg, the page's first element headers, with 0xff.
func garble(b []byte, pg int) []byte {
	b = bytes.Clone(b)
	for i := pg*defaultPageSize + pageHeaderSize; i < pg*defaultPageSize+80; i++ {
		b[i] = 0xff
	}
	return b
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func openQuiet(path string) (*Store, error) {
	return Open(context.Background(), Options{Path: path, OpenTimeout: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// TestDamagedFileRefusedUntouched: a truncated or damaged file is refused by Open with ErrCorrupt
// naming the file, never a panic or a fault, and its bytes are as they were.
func TestDamagedFileRefusedUntouched(t *testing.T) {
	path, _ := seededFile(t, 3000)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := readMeta(bytes.NewReader(orig), 0)
	if m1, ok1 := readMeta(bytes.NewReader(orig), defaultPageSize); !ok || (ok1 && m1.txid > m.txid) {
		m = m1
	}
	jobsRoot := rootPage(t, path, bucketJobs)
	for name, damage := range map[string]func([]byte) []byte{
		"truncated to half":        func(b []byte) []byte { return b[:len(b)/2] },
		"truncated to one page":    func(b []byte) []byte { return b[:defaultPageSize] },
		"truncated to 10 bytes":    func(b []byte) []byte { return b[:10] },
		"freelist page garbled":    func(b []byte) []byte { return garble(b, int(m.freelist)) },
		"freelist page type wrong": func(b []byte) []byte { b = bytes.Clone(b); b[int(m.freelist)*defaultPageSize+8] = flagLeaf; return b },
		"jobs root page garbled":   func(b []byte) []byte { return garble(b, jobsRoot) },
		"both meta pages garbled": func(b []byte) []byte {
			b = bytes.Clone(b)
			copy(b[20:40], "damaged damaged dama")
			copy(b[defaultPageSize+20:], "damaged damaged dama")
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "tandem.db")
			if err := os.WriteFile(p, damage(orig), 0o600); err != nil {
				t.Fatal(err)
			}
			before := sum(t, p)
			s, err := openQuiet(p)
			if err == nil {
				s.Close()
				t.Fatal("Open accepted the damaged file")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) {
				t.Fatalf("Open: %v; want ErrCorrupt naming %s", err, p)
			}
			t.Log(err)
			if sum(t, p) != before {
				t.Fatal("the damaged file was changed")
			}
			// The file is not held: once it is restored, it opens.
			if err := os.WriteFile(p, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err = openQuiet(p)
			if err != nil {
				t.Fatalf("the restored file: %v", err)
			}
			s.Close()
		})
	}
}

// TestDamageFoundLaterFailsOperations: a damaged page deep in the jobs bucket, which Open does not
// read, fails the reads and writes that meet it with ErrCorrupt instead of a panic; the rest of the
// store goes on working, and Check reports the damage.
func TestDamageFoundLaterFailsOperations(t *testing.T) {
	path, js := seededFile(t, 3000)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	victim := js[1500]
	at := bytes.Index(orig, victim.Payload)
	if at < 0 || bytes.LastIndex(orig, victim.Payload) != at {
		t.Fatal("the job's payload is not in exactly one place of the file")
	}
	pg := at / defaultPageSize
	if err := os.WriteFile(path, garble(orig, pg), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openQuiet(path)
	if err != nil {
		t.Fatalf("Open: %v (the damage is deep; Open should not see it)", err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Get(ctx, victim.ID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Get of a job on the damaged page: %v, want ErrCorrupt", err)
	}
	if _, err := s.Update(ctx, victim.ID, func(j *jobs.Job) error { j.Priority = 5; return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Update of a job on the damaged page: %v, want ErrCorrupt", err)
	}
	if _, _, err := s.List(ctx, jobs.Filter{Limit: 1000, Cursor: fmt.Sprintf("%x", mustID(t, js[1600].ID))}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("List across the damaged page: %v, want ErrCorrupt", err)
	}
	if err := s.Check(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Check: %v, want ErrCorrupt", err)
	}
	// Jobs elsewhere, and new ones, still work.
	if j, err := s.Get(ctx, js[0].ID); err != nil || j.ID != js[0].ID {
		t.Errorf("Get of a job on a sound page: %v", err)
	}
	if _, err := s.Update(ctx, js[0].ID, func(j *jobs.Job) error { j.Priority = 5; return nil }); err != nil {
		t.Errorf("Update of a job on a sound page: %v", err)
	}
	insert(t, s, newJob("q", 0, time.Time{}))
}

func mustID(t *testing.T, id string) []byte {
	t.Helper()
	k, err := idKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
