package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// errWrite marks a failure of bbolt itself inside a request: the whole batch is rolled back.
var errWrite = errors.New("store: write")

// txn is the committer's transaction with the per-queue counter changes it accumulated.
type txn struct {
	s             *Store
	tx            *bolt.Tx
	now           time.Time
	deltas        map[string]map[State]int
	pausedChanges map[string]bool
}

func (t *txn) bucket(name []byte) *bolt.Bucket { return t.tx.Bucket(name) }

// count returns the committed count plus this batch's changes so far.
func (t *txn) count(queue string, st State) int {
	t.s.mu.RLock()
	n := t.s.counts[queue][st]
	t.s.mu.RUnlock()
	return n + t.deltas[queue][st]
}

func (t *txn) waiting(queue string) int {
	return t.count(queue, StateScheduled) + t.count(queue, StateReady) + t.count(queue, StateRetrying)
}

func (t *txn) addCount(queue string, st State, d int) {
	m := t.deltas[queue]
	if m == nil {
		m = map[State]int{}
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

// indexEntries lists the (bucket, key, value) entries a record owns, all derived from its fields.
func indexEntries(j *Job, id []byte) []struct{ bucket, key, value []byte } {
	type e = struct{ bucket, key, value []byte }
	var out []e
	switch j.State {
	case StateReady:
		out = append(out, e{bucketReady, readyKey(j.Queue, j.Priority, j.RunAt, id), nil})
	case StateScheduled, StateRetrying:
		out = append(out, e{bucketSched, timeIDKey(j.RunAt, id), nil})
	case StateRunning:
		lease := j.RunAt
		if j.LeaseUntil != nil {
			lease = *j.LeaseUntil
		}
		out = append(out, e{bucketLease, timeIDKey(lease, id), nil})
	}
	if j.State.Finished() {
		fin := j.UpdatedAt
		if j.FinishedAt != nil {
			fin = *j.FinishedAt
		}
		out = append(out, e{bucketDone, timeIDKey(fin, id), nil})
	} else if j.UniqueKey != "" {
		out = append(out, e{bucketUniq, []byte(j.UniqueKey), id})
	}
	return out
}

// put writes a record, replacing old (nil for a new one): the old record's index entries and
// counter are removed and the new one's added.
func (t *txn) put(old, j *Job) error {
	id, err := idKey(j.ID)
	if err != nil {
		return err
	}
	if old != nil {
		for _, e := range indexEntries(old, id) {
			if err := t.bucket(e.bucket).Delete(e.key); err != nil {
				return fmt.Errorf("%w: unindex: %w", errWrite, err)
			}
		}
		t.addCount(old.Queue, old.State, -1)
	}
	j.UpdatedAt = t.now
	v, err := encodeJob(j)
	if err != nil {
		return err
	}
	if err := t.bucket(bucketJobs).Put(id, v); err != nil {
		return fmt.Errorf("%w: put job: %w", errWrite, err)
	}
	for _, e := range indexEntries(j, id) {
		if err := t.bucket(e.bucket).Put(e.key, e.value); err != nil {
			return fmt.Errorf("%w: index: %w", errWrite, err)
		}
	}
	t.addCount(j.Queue, j.State, 1)
	return nil
}

// remove deletes a record and its index entries.
func (t *txn) remove(j *Job) error {
	id, err := idKey(j.ID)
	if err != nil {
		return err
	}
	for _, e := range indexEntries(j, id) {
		if err := t.bucket(e.bucket).Delete(e.key); err != nil {
			return fmt.Errorf("%w: unindex: %w", errWrite, err)
		}
	}
	if err := t.bucket(bucketJobs).Delete(id); err != nil {
		return fmt.Errorf("%w: delete job: %w", errWrite, err)
	}
	t.addCount(j.Queue, j.State, -1)
	return nil
}

// get reads a record inside the transaction.
func (t *txn) get(id []byte) (*Job, error) {
	v := t.bucket(bucketJobs).Get(id)
	if v == nil {
		return nil, ErrNotFound
	}
	return decodeJob(v)
}

// modify is the one read-modify-write of a record inside the transaction: fn changes a copy, and
// put re-derives the indexes and counters from the old and new record. A non-nil error from fn
// aborts before anything is written.
func (t *txn) modify(id []byte, fn func(j *Job) error) (*Job, error) {
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
