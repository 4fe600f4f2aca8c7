//go:build linux

package sizing

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Affinity returns the CPUs the calling thread may run on (sched_getaffinity); for a thread that
// was not pinned, that is the process's affinity mask.
func Affinity() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}
