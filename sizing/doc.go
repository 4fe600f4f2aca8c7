// Package sizing answers "how big should this process be?" from the limits the kernel puts on it.
//
// Detect reads the CPU quota (cgroup v1 cpu.cfs_quota_us/cpu.cfs_period_us or v2 cpu.max), the
// memory limit (v1 memory.limit_in_bytes or v2 memory.max) and the CPU affinity mask of the calling
// process. Apply turns those into GOMAXPROCS and GOMEMLIMIT and says where each value came from;
// DefaultThreads and DefaultConcurrency give the pools' default sizes for a GOMAXPROCS. A Watcher
// reads the limits again every few seconds and reports a change; Reapply derives again from it,
// with Apply's precedence.
//
// Caveats: a fractional quota rounds down (1.5 CPUs is GOMAXPROCS 1, see GOMAXPROCSFor); a limit set
// on a parent cgroup counts, the tightest one on the way up wins; and the limits are read when
// called, so a live resize is seen at the Watcher's next read, not at once.
package sizing
