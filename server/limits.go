package server

import "time"

// Derived is one set of the container's limits and what tandem derived from them, as
// /admin/runtime shows the two sides of a LimitsChange.
type Derived struct {
	CPUQuota    float64 // cores; 0 = no limit
	CPUsAllowed int
	CPUs        float64 // min(CPUsAllowed, CPUQuota when set)
	MemoryLimit int64   // bytes; 0 = no limit
	GOMAXPROCS  int
	GOMEMLIMIT  int64 // bytes set by tandem; 0 = none
	Threads     int   // the http pool's size after the change
	Concurrency int   // the jobs pool's size after the change
}

// LimitsChange is the last change of the container's CPU or memory limits that tandem followed.
type LimitsChange struct {
	At       time.Time
	Old, New Derived
}

// view is the JSON of a LimitsChange: old and new side by side, no limit as null.
func (c *LimitsChange) view() any {
	if c == nil {
		return nil
	}
	side := func(d Derived) map[string]any {
		return map[string]any{
			"cpu_quota": nullIfZero(d.CPUQuota), "cpus_allowed": d.CPUsAllowed, "cpus": d.CPUs,
			"memory_limit": nullIfZero(d.MemoryLimit), "gomaxprocs": d.GOMAXPROCS, "gomemlimit": nullIfZero(d.GOMEMLIMIT),
			"threads": d.Threads, "concurrency": d.Concurrency,
		}
	}
	return map[string]any{"at": c.At.UTC(), "old": side(c.Old), "new": side(c.New)}
}

// watchInterval is limits_watch_interval: a duration, or "off".
func watchInterval(d time.Duration) string {
	if d <= 0 {
		return "off"
	}
	return d.String()
}
