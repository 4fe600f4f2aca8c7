package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tandem-run/tandem/jobs"

	bolt "go.etcd.io/bbolt"
)

// errWrite marks a failure of bbolt itself inside a request: the whole batch is rolled back.
var errWrite = errors.New("store: write")

// txn is the committer's transaction with the per-queue counter changes and the record changes
// (writeback.go) it accumulated.
type txn struct {
	s             *Store
	tx            *bolt.Tx
	now           time.Time
	deltas        map[string]map[jobs.State]int
	pausedChanges map[string]bool

	wb *writeback // the records changed (writeback.go)
}

func (t *txn) bucket(name []byte) *bolt.Bucket { return t.tx.Bucket(name) }

// count returns the committed count plus this batch's changes so far.
func (t *txn) count(queue string, st jobs.State) int {
	t.s.mu.RLock()
	n := t.s.counts[queue][st]
	t.s.mu.RUnlock()
	return n + t.deltas[queue][st]
}

func (t *txn) waiting(queue string) int {
	return t.count(queue, jobs.StateScheduled) + t.count(queue, jobs.StateReady) + t.count(queue, jobs.StateRetrying)
}

func (t *txn) addCount(queue string, st jobs.State, d int) {
	m := t.deltas[queue]
	if m == nil {
		m = map[jobs.State]int{}
		t.deltas[queue] = m
	}
	m[st] += d
}

// flushCounts writes this batch's counter changes to the counts bucket.
func (t *txn) flushCounts() error {
	b := t.bucket(bucketCounts)
	for q, m := range t.deltas {
		for st, d := range m {
			if d == 0 {
				continue
			}
			k := countKey(q, st)
			n := t.count(q, st)
			if n < 0 {
				return fmt.Errorf("%w: counter %s/%s went negative", errWrite, q, st)
			}
			if err := b.Put(k, binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
				return fmt.Errorf("%w: counter: %w", errWrite, err)
			}
		}
	}
	return nil
}

// indexEntry is one entry of an index bucket that a record owns.
type indexEntry struct{ bucket, key, value []byte }

// indexEntries lists the entries a record owns, all derived from its fields: at most two, returned
// in an array so the hot paths allocate nothing for the list itself.
func indexEntries(j *jobs.Job, id []byte) (out [2]indexEntry, n int) {
	switch j.State {
	case jobs.StateReady:
		out[n] = indexEntry{bucketReady, readyKey(j.Queue, j.Priority, j.RunAt, id), nil}
		n++
	case jobs.StateScheduled, jobs.StateRetrying:
		out[n] = indexEntry{bucketSched, timeIDKey(j.RunAt, id), nil}
		n++
	case jobs.StatePrefetched, jobs.StateRunning:
		lease := j.RunAt
		if j.LeaseUntil != nil {
			lease = *j.LeaseUntil
		}
		out[n] = indexEntry{bucketLease, timeIDKey(lease, id), nil}
		n++
	}
	if j.State.Finished() {
		fin := j.UpdatedAt
		if j.FinishedAt != nil {
			fin = *j.FinishedAt
		}
		out[n] = indexEntry{bucketDone, timeIDKey(fin, id), nil}
		n++
	} else if j.UniqueKey != "" {
		out[n] = indexEntry{bucketUniq, []byte(j.UniqueKey), id}
		n++
	}
	return out, n
}

// modify is the one read-modify-write of a record inside the transaction: fn changes a copy, and
// put re-derives the indexes and counters from the old and new record. A non-nil error from fn
// aborts before anything is written.
func (t *txn) modify(id []byte, fn func(j *jobs.Job) error) (*jobs.Job, error) {
	old, err := t.get(id)
	if err != nil {
		return nil, err
	}
	j := old.Clone()
	if err := fn(j); err != nil {
		return nil, err
	}
	j.ID = old.ID
	if err := t.put(old, j); err != nil {
		return nil, err
	}
	return j, nil
}
