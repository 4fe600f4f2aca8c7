//go:build linux

package sizing

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// schedAffinity returns the CPUs the calling process may run on (sched_getaffinity).
func schedAffinity() ([]int, error) {
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
