package store

import (
	"bytes"
	"fmt"

	"github.com/tandem-run/tandem/jobs"

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
	key  idArray
	orig *jobs.Job // the record as the file holds it; nil when the batch created it
	cur  *jobs.Job // the record as the batch left it; nil when the batch removed it
}

// writeback is the committer's record of the changes of the batch being built. The committer keeps
// one and resets it after each batch, so its maps and slab keep their memory between batches.
type writeback struct {
	cache   map[idArray]*pending // records changed and not yet written back
	order   []*pending           // the same, in the order they were first changed
	touched map[idArray]bool     // every record the batch changed, written back or not
	slab    []pending            // where pendings live; a full slab is replaced, never grown
	cursors map[string]*bolt.Cursor
}

func newWriteback() *writeback {
	return &writeback{cache: map[idArray]*pending{}, touched: map[idArray]bool{}, cursors: map[string]*bolt.Cursor{}}
}

// reset forgets the batch, keeping the memory.
func (w *writeback) reset() {
	clear(w.cache)
	clear(w.touched)
	clear(w.cursors)
	clear(w.order)
	w.order = w.order[:0]
	clear(w.slab) // drop the records they point to
	w.slab = w.slab[:0]
}

// entry returns the pending change for key, starting one from orig when there is none.
func (t *txn) entry(key idArray, orig *jobs.Job) *pending {
	w := t.wb
	if p := w.cache[key]; p != nil {
		return p
	}
	if len(w.slab) == cap(w.slab) {
		w.slab = make([]pending, 0, 256) // earlier pendings stay where they are
	}
	w.slab = append(w.slab, pending{key: key, orig: orig, cur: orig})
	p := &w.slab[len(w.slab)-1]
	w.cache[key] = p
	w.order = append(w.order, p)
	w.touched[key] = true
	return p
}

// put stores j in place of old (nil for a new record); counters follow at once, the bbolt writes at
// the flush. j belongs to the transaction from here on: callers may read it but not change it.
func (t *txn) put(old, j *jobs.Job) error {
	key, err := parseID(j.ID)
	if err != nil {
		return err
	}
	if old != nil {
		t.addCount(old.Queue, old.State, -1)
	}
	// The clock is read again, not the commit's t.now: fn may have read it later than t.now (a
	// job's FinishedAt), and a record's last update must not be before what it records.
	j.UpdatedAt = t.s.opts.Now()
	t.entry(key, old).cur = j
	t.addCount(j.Queue, j.State, 1)
	return nil
}

// remove deletes a record and its index entries at the flush.
func (t *txn) remove(j *jobs.Job) error {
	key, err := parseID(j.ID)
	if err != nil {
		return err
	}
	t.entry(key, j).cur = nil
	t.addCount(j.Queue, j.State, -1)
	return nil
}

// get reads a record inside the transaction: the batch's version when it changed it, else the
// file's. The result is shared with the transaction: read it, clone it to change it.
func (t *txn) get(id []byte) (*jobs.Job, error) {
	if p := t.wb.cache[toIDArray(id)]; p != nil {
		if p.cur == nil {
			return nil, jobs.ErrNotFound
		}
		return p.cur, nil
	}
	k, v := t.cursor(bucketJobs).Seek(id)
	if v == nil || !bytes.Equal(k, id) {
		return nil, jobs.ErrNotFound
	}
	return decodeJob(v)
}

// cursor returns the transaction's cursor on a bucket. Bucket.Get and Bucket.Delete make a new
// cursor and grow its stack on every call; one cursor per bucket, repositioned by each Seek, does
// that once per transaction.
func (t *txn) cursor(name []byte) *bolt.Cursor {
	c := t.wb.cursors[string(name)]
	if c == nil {
		c = t.bucket(name).Cursor()
		t.wb.cursors[string(name)] = c
	}
	return c
}

// del deletes key from a bucket when it is there.
func (t *txn) del(name, key []byte) error {
	c := t.cursor(name)
	if k, _ := c.Seek(key); k == nil || !bytes.Equal(k, key) {
		return nil
	}
	return c.Delete()
}

// changedInBatch reports whether the batch wrote the record: its new state is not on disk yet.
func (t *txn) changedInBatch(id []byte) bool { return t.wb.touched[toIDArray(id)] }

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
	w := t.wb
	for _, p := range w.order {
		id := p.key[:]
		var was, now [2]indexEntry
		var nw, nn int
		if p.orig != nil {
			was, nw = indexEntries(p.orig, id)
		}
		if p.cur != nil {
			now, nn = indexEntries(p.cur, id)
		}
		for _, e := range was[:nw] {
			if !holds(now[:nn], e) {
				if err := t.del(e.bucket, e.key); err != nil {
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
			if err := t.bucket(bucketJobs).Put(id, v); err != nil {
				return fmt.Errorf("%w: put job: %w", errWrite, err)
			}
		case p.orig != nil:
			if err := t.del(bucketJobs, id); err != nil {
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
		delete(w.cache, p.key)
	}
	clear(w.order)
	w.order = w.order[:0]
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
