//go:build !linux

package sizing

import "errors"

// Affinity has no portable equivalent off Linux; Detect then reports no affinity.
func Affinity() ([]int, error) { return nil, errors.New("cpu affinity needs linux") }
