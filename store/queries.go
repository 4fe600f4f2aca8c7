package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/tandem-run/tandem/jobs"

	bolt "go.etcd.io/bbolt"
)

// Get returns one job, or jobs.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*jobs.Job, error) {
	key, err := idKey(id)
	if err != nil {
		return nil, err
	}
	var j *jobs.Job
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketJobs).Get(key)
		if v == nil {
			return jobs.ErrNotFound
		}
		j, err = decodeJob(v)
		return err
	})
	return j, err
}

// GetMany returns the jobs of ids that exist, in the order of ids, from one read transaction.
func (s *Store) GetMany(ctx context.Context, ids []string) ([]*jobs.Job, error) {
	out := make([]*jobs.Job, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		for _, id := range ids {
			key, err := idKey(id)
			if err != nil || seen[string(key)] {
				continue // an id named twice is returned once
			}
			seen[string(key)] = true
			v := b.Get(key)
			if v == nil {
				continue
			}
			j, err := decodeJob(v)
			if err != nil {
				return err
			}
			out = append(out, j)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// listScanMax bounds how many records one List reads, so a filter that matches nothing in a large
// store answers quickly; the cursor then continues from where the scan stopped.
const listScanMax = 20_000

// List returns jobs newest first (ids are time-ordered) that match f, and the cursor of the next
// page ("" when there is none). A cursor not made by List is jobs.ErrBadCursor.
func (s *Store) List(ctx context.Context, f jobs.Filter) ([]*jobs.Job, string, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, 1000)
	var from []byte
	if f.Cursor != "" {
		b, err := hex.DecodeString(f.Cursor)
		if err != nil || len(b) != idLen {
			return nil, "", fmt.Errorf("%w: %q", jobs.ErrBadCursor, f.Cursor)
		}
		from = b
	}
	var out []*jobs.Job
	var next string
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketJobs).Cursor()
		var k, v []byte
		if from == nil {
			k, v = c.Last()
		} else {
			// The cursor is the last id returned (or scanned); continue below it.
			k, v = c.Seek(from)
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && bytes.Compare(k, from) >= 0 {
				k, v = c.Prev()
			}
		}
		scanned := 0
		var last []byte
		for ; k != nil; k, v = c.Prev() {
			if len(out) == f.Limit || scanned == listScanMax {
				next = hex.EncodeToString(last) // resume strictly below the last key examined
				return nil
			}
			scanned++
			last = append(last[:0], k...)
			j, err := decodeJob(v)
			if err != nil {
				return fmt.Errorf("job %s: %w", idString(k), err)
			}
			if f.Matches(j) {
				out = append(out, j)
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// Expired returns the ids of running jobs whose lease ended before now, at most limit.
func (s *Store) Expired(ctx context.Context, now time.Time, limit int) ([]string, error) {
	var ids []string
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLease).Cursor()
		for k, _ := c.First(); k != nil && len(ids) < limit; k, _ = c.Next() {
			if !bytesTime(k[:8]).Before(now) {
				break
			}
			ids = append(ids, idString(k[8:]))
		}
		return nil
	})
	return ids, err
}

// Queues returns every queue that has or had jobs, or is paused, sorted by name. Counts come from
// counters kept by each transaction, never from a scan; the oldest ready job is at most ten seeks.
func (s *Store) Queues(ctx context.Context) ([]jobs.QueueStats, error) {
	s.mu.RLock()
	out := make([]jobs.QueueStats, 0, len(s.counts)+len(s.paused))
	seen := map[string]bool{}
	add := func(q string) {
		if seen[q] {
			return
		}
		seen[q] = true
		qs := jobs.QueueStats{Name: q, Paused: s.paused[q], Counts: make(map[jobs.State]int, len(jobs.States))}
		for _, st := range jobs.States {
			qs.Counts[st] = s.counts[q][st]
		}
		out = append(out, qs)
	}
	for q := range s.counts {
		add(q)
	}
	for q := range s.paused {
		add(q)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketReady).Cursor()
		for i := range out {
			if out[i].Counts[jobs.StateReady] == 0 {
				continue
			}
			// Ready keys sort by priority first: the oldest is the first key of some priority.
			for p := 9; p >= 0; p-- {
				prefix := append(queuePrefix(out[i].Name), byte(9-p))
				k, _ := c.Seek(prefix)
				if k == nil || !bytes.HasPrefix(k, prefix) {
					continue
				}
				rk, err := parseReadyKey(k)
				if err != nil {
					return err
				}
				if out[i].OldestReady.IsZero() || rk.runAt.Before(out[i].OldestReady) {
					out[i].OldestReady = rk.runAt
				}
			}
		}
		return nil
	})
	return out, err
}

// Waiting returns the queue's scheduled, ready and retrying jobs, from the in-memory counters.
func (s *Store) Waiting(queue string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.counts[queue]
	return c[jobs.StateScheduled] + c[jobs.StateReady] + c[jobs.StateRetrying]
}

// Ready returns the queue's ready jobs, from the in-memory counters.
func (s *Store) Ready(queue string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.counts[queue][jobs.StateReady]
}

// Paused reports whether the queue is paused.
func (s *Store) Paused(queue string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.paused[queue]
}

// Check checks tandem's own invariants -- every index entry is one that a record derives
// (index.go), every record's entries are present, the counters match the records -- then runs
// bbolt's consistency check over the whole file. It reads the whole file; tests call it after each
// use. Damage is an error wrapping ErrCorrupt, never a panic: tandem's pass reads every page of
// every bucket in this goroutine, under guard, before bbolt's checker (which runs in a goroutine of
// its own, where a read past the file could not be recovered) reads them again.
func (s *Store) Check() error {
	return s.view(func(tx *bolt.Tx) error {
		if err := checkIndexes(tx); err != nil {
			return corrupt(s.opts.Path, "%v", err)
		}
		var first error
		for err := range tx.Check() { // drain: the checker goroutine stops only at the end
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return corrupt(s.opts.Path, "%v", first)
		}
		return nil
	})
}

func checkIndexes(tx *bolt.Tx) error {
	want := map[string]string{} // bucket 0x00 key -> value, from the records
	counts := map[string]uint64{}
	err := tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
		j, err := decodeJob(v)
		if err != nil {
			return fmt.Errorf("record %x: %w", k, err)
		}
		es, n := indexEntries(j, k)
		for _, e := range es[:n] {
			want[string(e.bucket)+"\x00"+string(e.key)] = string(e.value)
		}
		counts[string(countKey(j.Queue, j.State))]++
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketReady, bucketSched, bucketLease, bucketDone, bucketUniq} {
		err := tx.Bucket(name).ForEach(func(k, v []byte) error {
			id := string(name) + "\x00" + string(k)
			w, ok := want[id]
			switch {
			case !ok:
				return fmt.Errorf("index %s holds %x, which no record derives", name, k)
			case w != string(v):
				return fmt.Errorf("index %s entry %x is %x, the record says %x", name, k, v, w)
			}
			delete(want, id)
			return nil
		})
		if err != nil {
			return err
		}
	}
	for id := range want {
		return fmt.Errorf("index entry %q of a record is missing", id)
	}
	err = tx.Bucket(bucketCounts).ForEach(func(k, v []byte) error {
		if n := binary.BigEndian.Uint64(v); n != counts[string(k)] {
			return fmt.Errorf("counter %q is %d, the records say %d", k, n, counts[string(k)])
		}
		delete(counts, string(k))
		return nil
	})
	for k, n := range counts {
		if err == nil {
			err = fmt.Errorf("counter %q is missing, the records say %d", k, n)
		}
	}
	return err
}
