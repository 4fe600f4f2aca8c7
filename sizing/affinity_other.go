//go:build !linux

package sizing

import "errors"

// schedAffinity has no portable equivalent off Linux; Detect then reports no affinity.
func schedAffinity() ([]int, error) { return nil, errors.New("cpu affinity needs linux") }
