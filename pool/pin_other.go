//go:build !linux

package pool

import (
	"errors"
	"os"
)

var errNoPinning = errors.New("cpu pinning needs linux")

func PinThread(cpu int) error               { return errNoPinning }
func setAffinity([]int) error               { return errNoPinning }
func Gettid() int                           { return os.Getpid() }
func ThreadAffinity(tid int) ([]int, error) { return nil, errNoPinning }
