package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// A batch's record changes are written back to bbolt once, when the batch is flushed, rather than
// as each request makes them. A job leased and acknowledged in the same batch then costs one write
// of its record and the net change of its index entries (ready -> done), not two writes and a lease
// entry added and deleted again: each bbolt Put or Delete is a B+tree descent and an allocation or
// three, and the committer's time per job is what bounds throughput.
//
// Reads of records go through the cache; reads of index buckets flush it first (scan), so a scan
// always sees every change made before it in the batch.

// pending is one record changed in the current batch.
type pending struct {
	id   []byte
	orig *Job // the record as the file holds it; nil when the batch created it
	cur  *Job // the record as the batch left it; nil when the batch removed it
}

// idArray is a record key usable as a map key.
type idArray [idLen]byte

func toIDArray(id []byte) (a idArray) { copy(a[:], id); return a }

// entry returns the pending change for id, starting one from orig when there is none.
func (t *txn) entry(id []byte, orig *Job) *pending {
	a := toIDArray(id)
	if p := t.cache[a]; p != nil {
		return p
	}
	if t.cache == nil {
		t.cache = map[idArray]*pending{}
		t.touched = map[idArray]bool{}
	}
	p := &pending{id: a[:], orig: orig, cur: orig}
	t.cache[a] = p
	t.order = append(t.order, p)
	t.touched[a] = true
	return p
}

// put stores j in place of old (nil for a new record); counters follow at once, the bbolt writes at
// the flush. j belongs to the transaction from here on: callers may read it but not change it.
func (t *txn) put(old, j *Job) error {
	id, err := idKey(j.ID)
	if err != nil {
		return err
	}
	if old != nil {
		t.addCount(old.Queue, old.State, -1)
	}
	j.UpdatedAt = t.now
	t.entry(id, old).cur = j
	t.addCount(j.Queue, j.State, 1)
	return nil
}

// remove deletes a record and its index entries at the flush.
func (t *txn) remove(j *Job) error {
	id, err := idKey(j.ID)
	if err != nil {
		return err
	}
	t.entry(id, j).cur = nil
	t.addCount(j.Queue, j.State, -1)
	return nil
}

// get reads a record inside the transaction: the batch's version when it changed it, else the
// file's. The result is shared with the transaction: read it, clone it to change it.
func (t *txn) get(id []byte) (*Job, error) {
	if p := t.cache[toIDArray(id)]; p != nil {
		if p.cur == nil {
			return nil, ErrNotFound
		}
		return p.cur, nil
	}
	v := t.bucket(bucketJobs).Get(id)
	if v == nil {
		return nil, ErrNotFound
	}
	return decodeJob(v)
}

// changedInBatch reports whether the batch wrote the record: its new state is not on disk yet.
func (t *txn) changedInBatch(id []byte) bool { return t.touched[toIDArray(id)] }

// scan returns an index bucket for reading, after writing back every pending change so that the
// bucket holds them.
func (t *txn) scan(name []byte) (*bolt.Bucket, error) {
	if err := t.flush(); err != nil {
		return nil, err
	}
	return t.bucket(name), nil
}

// flush writes every pending record and the net change of its index entries.
func (t *txn) flush() error {
	for _, p := range t.order {
		var was, now [2]indexEntry
		var nw, nn int
		if p.orig != nil {
			was, nw = indexEntries(p.orig, p.id)
		}
		if p.cur != nil {
			now, nn = indexEntries(p.cur, p.id)
		}
		for _, e := range was[:nw] {
			if !holds(now[:nn], e) {
				if err := t.bucket(e.bucket).Delete(e.key); err != nil {
					return fmt.Errorf("%w: unindex: %w", errWrite, err)
				}
			}
		}
		switch {
		case p.cur != nil:
			v, err := encodeJob(p.cur)
			if err != nil {
				return err
			}
			if err := t.bucket(bucketJobs).Put(p.id, v); err != nil {
				return fmt.Errorf("%w: put job: %w", errWrite, err)
			}
		case p.orig != nil:
			if err := t.bucket(bucketJobs).Delete(p.id); err != nil {
				return fmt.Errorf("%w: delete job: %w", errWrite, err)
			}
		}
		for _, e := range now[:nn] {
			if !holds(was[:nw], e) {
				if err := t.bucket(e.bucket).Put(e.key, e.value); err != nil {
					return fmt.Errorf("%w: index: %w", errWrite, err)
				}
			}
		}
		delete(t.cache, toIDArray(p.id))
	}
	t.order = t.order[:0]
	return nil
}

// holds reports whether es has e, value included.
func holds(es []indexEntry, e indexEntry) bool {
	for _, x := range es {
		if bytes.Equal(x.bucket, e.bucket) && bytes.Equal(x.key, e.key) && bytes.Equal(x.value, e.value) {
			return true
		}
	}
	return false
}
