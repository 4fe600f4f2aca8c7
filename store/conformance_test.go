package store_test

import (
	"testing"

	"github.com/tandem-run/tandem/jobs/storetest"
	"github.com/tandem-run/tandem/jobs/storetest/backends"
)

// TestConformance runs the jobs.Store conformance suite on the bbolt file, with fsync on as
// tandem runs it by default.
func TestConformance(t *testing.T) { storetest.Run(t, backends.BBolt(backends.BBoltOptions{})) }
