package postgres_test

import (
	"testing"

	"github.com/tandem-run/tandem/jobs/storetest"
	"github.com/tandem-run/tandem/jobs/storetest/backends"
)

// TestConformance runs the jobs.Store conformance suite on a fresh database.
func TestConformance(t *testing.T) { storetest.Run(t, backends.Postgres()) }
