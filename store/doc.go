// Package store persists tandem's jobs in one bbolt file: it is the backend behind package jobs,
// implementing jobs.Store on the record types jobs owns (jobs.Job, jobs.State, ...) and returning
// jobs' errors (jobs.ErrNotFound, ...); only errors about the file itself (ErrLocked, ErrCorrupt,
// ErrNotTandem, ErrSchemaVersion) are its own. It knows records, keys and transactions; the
// meaning of states (retries, backoff, handlers) belongs to package jobs. Callers other than the
// program that opens the file reach it through a jobs.Runtime.
//
// # Layout
//
// Buckets, each ordered for one hot path so that dispatch never scans finished jobs:
//
//	meta     schema version, paused queues, periodic marks ("periodic:" name -> slot, job id)
//	jobs     id (16-byte UUIDv7, time-ordered) -> versioned record
//	ready    queue 0x00 (9-priority) run_at id -> nil   best job of a queue is its first key
//	sched    run_at id -> nil                            scheduled and retrying jobs, soonest first
//	lease    lease_until id -> nil                       prefetched and running jobs by lease deadline
//	done     finished_at id -> nil                       finished jobs, for the retention sweeper
//	uniq     unique_key -> id                            live jobs holding a unique key
//	counts   queue 0x00 state -> uint64                  per-queue counters, so stats never scan
//
// Every index entry is derived from the record by one function (see index.go) and rewritten from
// the old and new record on each change, so indexes cannot drift from records.
//
// # Group commit
//
// All writes go through one committer goroutine that drains a channel of requests into a single
// read-write transaction and a single fsync: many concurrent enqueues and acknowledgements share the
// cost of one disk flush. A request whose own checks fail (a unique key, a full queue, a missing
// job) fails alone, before it writes anything; a failed commit (a full disk) fails every request
// of that batch, leaves the file as it was before the batch, and the next batch tries again.
// Requests that arrive while a batch runs join it before its commit, up to Options.MaxBatch.
//
// Inside a batch, changed records are kept and written back once, with the net change of their
// index entries (writeback.go): a job leased and acknowledged in the same batch (LeaseQueued starts
// jobs before their lease's commit for that purpose) is written once, ready -> done.
//
// # Caveats
//
//   - One writer per file: bbolt takes an exclusive flock. A second process waits at most
//     Options.OpenTimeout, then Open returns ErrLocked.
//   - Options.NoSync (store.sync: none) skips fsync. A crash of the process loses nothing, but a
//     power loss or kernel crash can lose acknowledged jobs and, rarely, corrupt the file. Unsafe.
//   - A record holds its payload and result; keep them small (the jobs package caps them, 64 KiB by
//     default). bbolt keeps large values in overflow pages and copies them on every update.
//   - The file only grows: space freed by deleted jobs is reused, not returned to the filesystem.
//   - Open refuses files it did not create (ErrNotTandem) and damaged ones (ErrCorrupt), and never
//     writes to them: the file keeps every byte. Without reading the whole file, it checks the meta
//     pages, that the file is as long as they say (a copy cut short, a full disk), the freelist
//     and root pages, tandem's metadata and counters, and each bucket's first and last entries
//     (damage.go).
//   - bbolt keeps no checksum of its pages, so damage deeper in the file is found when an operation
//     reads it. That read fails with ErrCorrupt, or, for a write, its whole batch does (rolled
//     back; the committer goes on with the next batch), rather than the process dying: bbolt's
//     panics are recovered, and debug.SetPanicOnFault turns a read past the mapped file into one.
//     The process goes on serving the rest of the file. Not recovered: a fault inside bbolt's own
//     checker goroutine (so Check reads every page itself first), damage that sends bbolt round a
//     cycle of pages, and a damaged value that still decodes (a changed payload byte). A panic
//     inside bolt.Open, past the checks above, leaves the file open in the process until it exits.
package store
