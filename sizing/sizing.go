package sizing

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
)

// Resources is what the process may use, read from its cgroup and CPU affinity.
type Resources struct {
	CPUQuota      float64 // cores allowed by the cgroup CPU quota (quota/period); 0 = no limit
	CPUsAllowed   int     // CPUs in the affinity mask
	AllowedCPUs   []int   // their ids, ascending
	CPUs          float64 // min(CPUsAllowed, CPUQuota when set)
	MemoryLimit   int64   // bytes, from the cgroup memory limit; 0 = no limit
	CgroupVersion int     // 1 or 2 for the hierarchy the CPU limit was read from; 0 when none was found
}

// Equal reports whether r and o are the same limits.
func (r Resources) Equal(o Resources) bool {
	return r.CPUQuota == o.CPUQuota && r.CPUsAllowed == o.CPUsAllowed && r.CPUs == o.CPUs &&
		r.MemoryLimit == o.MemoryLimit && r.CgroupVersion == o.CgroupVersion && slices.Equal(r.AllowedCPUs, o.AllowedCPUs)
}

// DetectOptions say where to read from. The zero value reads the running process.
type DetectOptions struct {
	// Root is the directory under which /proc/self/cgroup, /proc/self/mountinfo and the cgroup
	// files are read. Default "/". Tests point it at a fake tree.
	Root string
	// Affinity returns the CPUs the process may run on. Default: sched_getaffinity.
	Affinity func() ([]int, error)
}

// Detect reads the CPU quota, memory limit and affinity of the calling process. Missing
// cgroup files mean "no limit"; unreadable or garbled ones are an error that names the file, and the
// Resources returned alongside still hold what could be read (at least the affinity).
func Detect(opts DetectOptions) (Resources, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.Affinity == nil {
		opts.Affinity = Affinity
	}
	var r Resources
	cpus, err := opts.Affinity()
	if err != nil || len(cpus) == 0 {
		cpus = make([]int, runtime.NumCPU())
		for i := range cpus {
			cpus[i] = i
		}
	}
	r.AllowedCPUs, r.CPUsAllowed, r.CPUs = cpus, len(cpus), float64(len(cpus))

	cg, err := readCgroups(opts.Root)
	if err != nil {
		return r, err
	}
	quota, version, err := cg.cpuQuota()
	if err != nil {
		return r, err
	}
	r.CPUQuota, r.CgroupVersion = quota, version
	if quota > 0 && quota < r.CPUs {
		r.CPUs = quota
	}
	if r.MemoryLimit, err = cg.memoryLimit(); err != nil {
		return r, err
	}
	return r, nil
}

// GOMAXPROCSFor returns the GOMAXPROCS for a CPU budget: floor(cpus), at least 1 (1.5 cores -> 1,
// 0.5 -> 1, 2 -> 2). A fractional core is time, not parallelism: rounding up lets the Go scheduler
// run more threads than the quota pays for, and they get throttled in every CFS period (why
// automaxprocs rounds down). Go 1.25's own default rounds up and never goes below 2, which is wrong
// for a pod limited to 1 CPU.
func GOMAXPROCSFor(cpus float64) int {
	return max(int(math.Floor(cpus)), 1)
}

// DefaultThreads is the default server.threads: 2 x gomaxprocs + 1, Gunicorn's rule for I/O-bound
// request handling (while one request waits on the network another can use the core).
func DefaultThreads(gomaxprocs int) int { return 2*gomaxprocs + 1 }

// DefaultConcurrency is the default jobs.concurrency: one worker per core, for CPU-bound jobs.
func DefaultConcurrency(gomaxprocs int) int { return gomaxprocs }

// Options is what the configuration says about GOMAXPROCS and GOMEMLIMIT.
type Options struct {
	GOMAXPROCS      int                 // 0 = derive
	GOMEMLIMITRatio float64             // share of the memory limit; default 0.9
	Getenv          func(string) string // default os.Getenv
}

// Settings says what Apply set and why.
type Settings struct {
	GOMAXPROCS       int
	GOMAXPROCSSource string // "env", "config", "cgroup" (the quota limited it) or "affinity"
	GOMEMLIMIT       int64  // what we set; 0 = left alone
	GOMEMLIMITSource string // "env", "cgroup" or "none"
}

// Apply sets GOMAXPROCS and GOMEMLIMIT. Precedence for GOMAXPROCS: the GOMAXPROCS
// environment variable (Go applied it already; left alone, as Go users expect), then the configured
// value, then GOMAXPROCSFor(r.CPUs). For GOMEMLIMIT: the GOMEMLIMIT environment variable, then
// ratio x r.MemoryLimit when there is a limit, else Go's default (no limit).
func Apply(r Resources, c Options) Settings {
	return Reapply(Settings{}, r, c)
}

// Reapply is Apply after the limits changed from what prev was derived from: the same
// precedence, so a value from the environment or the configuration stays as it is, and a
// GOMEMLIMIT tandem set from a memory limit that is gone goes back to Go's default (no limit).
func Reapply(prev Settings, r Resources, c Options) Settings {
	s := Derive(r, c)
	if s.GOMAXPROCSSource != "env" {
		runtime.GOMAXPROCS(s.GOMAXPROCS) // a no-op when it is already that
	}
	switch {
	case s.GOMEMLIMITSource == "cgroup":
		debug.SetMemoryLimit(s.GOMEMLIMIT)
	case s.GOMEMLIMITSource == "none" && prev.GOMEMLIMITSource == "cgroup":
		debug.SetMemoryLimit(math.MaxInt64)
	}
	return s
}

// Derive says what Apply would set, and why, without setting it. With GOMAXPROCS or GOMEMLIMIT
// in the environment it reports the runtime's current value.
func Derive(r Resources, c Options) Settings {
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if c.GOMEMLIMITRatio <= 0 || c.GOMEMLIMITRatio > 1 {
		c.GOMEMLIMITRatio = 0.9
	}
	var s Settings
	switch {
	case c.Getenv("GOMAXPROCS") != "":
		s.GOMAXPROCS, s.GOMAXPROCSSource = runtime.GOMAXPROCS(0), "env"
	case c.GOMAXPROCS > 0:
		s.GOMAXPROCS, s.GOMAXPROCSSource = c.GOMAXPROCS, "config"
	default:
		s.GOMAXPROCS, s.GOMAXPROCSSource = GOMAXPROCSFor(r.CPUs), "affinity"
		if r.CPUQuota > 0 && r.CPUQuota < float64(r.CPUsAllowed) {
			s.GOMAXPROCSSource = "cgroup"
		}
	}
	switch {
	case c.Getenv("GOMEMLIMIT") != "":
		s.GOMEMLIMIT, s.GOMEMLIMITSource = debug.SetMemoryLimit(-1), "env"
	case r.MemoryLimit > 0:
		s.GOMEMLIMIT, s.GOMEMLIMITSource = int64(float64(r.MemoryLimit)*c.GOMEMLIMITRatio), "cgroup"
	default:
		s.GOMEMLIMITSource = "none"
	}
	return s
}
