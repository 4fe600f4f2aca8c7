package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"

	"github.com/tandem-run/tandem/jobs"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// bbolt trusts its file: a page id past the end, or a page of the wrong type where it expects the
// freelist, makes it panic or read memory past the mapped file, which is a fatal fault rather than
// a panic. So before bbolt opens an existing file, preflight reads its two meta pages and the pages
// they point at with plain reads, and refuses the damage bbolt would crash on: above all a
// truncated file (a copy cut short, a full disk), which bbolt maps and then reads past its end.
// What preflight cannot see (a damaged page deep in a tree) is caught by guard: bbolt's panics,
// and faults made panics by debug.SetPanicOnFault, become errors wrapping ErrCorrupt.

// The bbolt file format, version 2 (go.etcd.io/bbolt/internal/common): each page starts with a
// 16-byte header (id u64, flags u16, count u16, overflow u32); pages 0 and 1 are meta pages
// holding, after the header, magic u32, version u32, page size u32, flags u32, root bucket
// (page u64, sequence u64), freelist page u64, high-water page u64, txid u64, and an FNV-64a
// checksum of the 56 bytes before it. Integers are in the machine's byte order.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16
	metaSize         = 64
	defaultPageSize  = 4096
	flagBranch       = 0x01
	flagLeaf         = 0x02
	flagFreelist     = 0x10
	pgidNoFreelist   = ^uint64(0)
	maxFreelistCount = 1 << 28 // far more pages than any file tandem writes; a bigger count is garbage
)

type boltMeta struct {
	pageSize                   uint32
	root, freelist, pgid, txid uint64
}

// readMeta decodes the meta page at off; ok is false when it is not a valid one.
func readMeta(f io.ReaderAt, off int64) (m boltMeta, ok bool) {
	b := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(b, off); err != nil {
		return m, false
	}
	b = b[pageHeaderSize:]
	le := binary.NativeEndian
	h := fnv.New64a()
	h.Write(b[:56])
	if le.Uint32(b[0:]) != boltMagic || le.Uint32(b[4:]) != boltVersion || le.Uint64(b[56:]) != h.Sum64() {
		return m, false
	}
	m = boltMeta{pageSize: le.Uint32(b[8:]), root: le.Uint64(b[16:]), freelist: le.Uint64(b[32:]), pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}
	return m, m.pageSize >= 512 && m.pageSize <= 1<<16 && m.pageSize&(m.pageSize-1) == 0
}

// fileState is what preflight learned of the file.
type fileState struct {
	existed    bool // the file held data: it is not created by this Open
	noFreelist bool // its freelist is not stored (bbolt rebuilds it by scanning)
}

// preflight checks an existing, non-empty database file before bbolt maps it, reading it with
// plain reads only. A nil error means bbolt may open it (a file with no valid meta page is left to
// bbolt, which refuses it with an error of its own).
func preflight(path string) (fileState, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileState{}, nil
	}
	if err != nil {
		return fileState{}, fmt.Errorf("store: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileState{}, fmt.Errorf("store: stat %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return fileState{}, nil
	}
	st := fileState{existed: true}
	err = checkFile(f, path, size, &st)
	return st, err
}

// checkFile is preflight's check of a file of size bytes.
func checkFile(f io.ReaderAt, path string, size int64, st *fileState) error {
	// bbolt's choice: the valid meta page with the highest transaction id. Page 1's offset is the
	// page size, read from page 0, or bbolt's default when page 0 is damaged.
	m0, ok0 := readMeta(f, 0)
	off1 := int64(defaultPageSize)
	if ok0 {
		off1 = int64(m0.pageSize)
	}
	m1, ok1 := readMeta(f, off1)
	var m boltMeta
	switch {
	case ok0 && (!ok1 || m0.txid >= m1.txid):
		m = m0
	case ok1:
		m = m1
	default:
		if size < 2*defaultPageSize {
			return corrupt(path, "the file holds %d bytes, less than a database's first two pages: it was cut short", size)
		}
		return nil // bbolt names what is wrong with both meta pages
	}
	ps := int64(m.pageSize)
	if need := int64(m.pgid) * ps; m.pgid < 2 || size < need || need < 0 {
		return corrupt(path, "the file holds %d bytes but its pages need %d: it was cut short (truncated)", size, need)
	}
	if m.root < 2 || m.root >= m.pgid {
		return corrupt(path, "the root page %d is out of the file's %d pages", m.root, m.pgid)
	}
	if err := checkPage(f, path, m, m.root, "root", flagBranch|flagLeaf); err != nil {
		return err
	}
	if m.freelist == pgidNoFreelist {
		st.noFreelist = true
		return nil
	}
	if m.freelist < 2 || m.freelist >= m.pgid {
		return corrupt(path, "the freelist page %d is out of the file's %d pages", m.freelist, m.pgid)
	}
	if err := checkPage(f, path, m, m.freelist, "freelist", flagFreelist); err != nil {
		return err
	}
	return checkFreelist(f, path, m)
}

// checkPage checks that page id is of one of the wanted types and that its overflow pages are
// inside the file.
func checkPage(f io.ReaderAt, path string, m boltMeta, id uint64, what string, want uint16) error {
	var h [pageHeaderSize]byte
	if _, err := f.ReadAt(h[:], int64(id)*int64(m.pageSize)); err != nil {
		return corrupt(path, "read the %s page %d: %v", what, id, err)
	}
	le := binary.NativeEndian
	if got := le.Uint64(h[0:]); got != id {
		return corrupt(path, "the %s page %d says it is page %d", what, id, got)
	}
	if flags := le.Uint16(h[8:]); flags&want == 0 || flags&^(flagBranch|flagLeaf|flagFreelist|0x04) != 0 {
		return corrupt(path, "the %s page %d has page type %#x", what, id, flags)
	}
	if ov := uint64(le.Uint32(h[12:])); id+ov >= m.pgid {
		return corrupt(path, "the %s page %d runs %d pages past the file's %d pages", what, id, ov, m.pgid)
	}
	return nil
}

// checkFreelist checks that the freelist's page ids are inside the file: bbolt would write to them.
func checkFreelist(f io.ReaderAt, path string, m boltMeta) error {
	le := binary.NativeEndian
	off := int64(m.freelist) * int64(m.pageSize)
	var h [pageHeaderSize + 8]byte
	if _, err := f.ReadAt(h[:], off); err != nil {
		return corrupt(path, "read the freelist page %d: %v", m.freelist, err)
	}
	count, first := uint64(le.Uint16(h[10:])), int64(0)
	if count == 0xFFFF { // the real count is the first element
		count, first = le.Uint64(h[16:]), 1
	}
	room := (uint64(le.Uint32(h[12:]))+1)*uint64(m.pageSize) - pageHeaderSize
	if count > maxFreelistCount || (uint64(first)+count)*8 > room {
		return corrupt(path, "the freelist page %d claims %d free pages, more than it can hold", m.freelist, count)
	}
	ids := make([]byte, count*8)
	if _, err := f.ReadAt(ids, off+pageHeaderSize+first*8); err != nil {
		return corrupt(path, "read the freelist: %v", err)
	}
	for i := 0; i < len(ids); i += 8 {
		if id := le.Uint64(ids[i:]); id < 2 || id >= m.pgid {
			return corrupt(path, "the freelist holds page %d, out of the file's %d pages", id, m.pgid)
		}
	}
	return nil
}

// corrupt is an error wrapping ErrCorrupt that names the file and what is wrong with it.
func corrupt(path, format string, args ...any) error {
	return fmt.Errorf("store %s: %w: %s", path, ErrCorrupt, fmt.Sprintf(format, args...))
}

// guard runs fn, which reads or writes the file through bbolt, and turns a panic into an error
// wrapping ErrCorrupt: bbolt panics on the pages it finds damaged (a wrong page type, an element
// out of its page), and debug.SetPanicOnFault turns a read past the mapped file, otherwise a fatal
// fault, into a panic too. SetPanicOnFault applies to the calling goroutine only, which is why the
// store reads in the caller's goroutine. A transaction that fn left open is rolled back by bbolt's
// View or by the caller.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = corrupt(path, "reading it failed: %v", v)
		}
	}()
	return fn()
}

// view is db.View under guard; a record that does not decode is reported as damage too, and a
// read after Close is jobs.ErrStoreClosed, as the writes' is.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	err := guard(s.opts.Path, func() error { return s.db.View(fn) })
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("store %s: %w", s.opts.Path, jobs.ErrStoreClosed)
	}
	if errors.Is(err, errBadRecord) && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("store %s: %w: %w", s.opts.Path, ErrCorrupt, err)
	}
	return err
}

// checkEnds reads a bucket's first and last entries: the pages from its root down to its two ends,
// which is all of a small bucket, for a price that does not grow with the file (a whole pass is
// Check's job). Damage there panics (Open's guard) or fails to parse.
func checkEnds(b *bolt.Bucket, name []byte) error {
	c := b.Cursor()
	for _, kv := range [2][2][]byte{kvOf(c.First()), kvOf(c.Last())} {
		k, v := kv[0], kv[1]
		if k == nil {
			return nil
		}
		var err error
		switch string(name) {
		case string(bucketJobs):
			if len(k) != idLen {
				err = fmt.Errorf("bad job key %x", k)
			} else {
				_, err = decodeJob(v)
			}
		case string(bucketReady):
			_, err = parseReadyKey(k)
		case string(bucketSched), string(bucketLease), string(bucketDone):
			if len(k) != 8+idLen {
				err = fmt.Errorf("bad key %x", k)
			}
		}
		if err != nil {
			return fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	return nil
}

func kvOf(k, v []byte) [2][]byte { return [2][]byte{k, v} }
