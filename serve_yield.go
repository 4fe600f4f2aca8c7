package main

import (
	"context"
	"log/slog"

	"github.com/tandem-run/tandem/autoscale"
	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/metrics"
	"github.com/tandem-run/tandem/sizing"
)

// startYield starts the controller that makes jobs yield cores to HTTP (jobs.yield_to_http), and
// reports its state in the metrics; nil when it is off. Its Middleware counts the requests it
// watches: install it inside admission, where only the main router's requests pass (not the
// admin listener's dashboard and scrapes).
func startYield(ctx context.Context, cfg Config, rt sizing.Settings, jobsRT *jobs.Runtime, mx *metrics.Metrics, log *slog.Logger) (*autoscale.Yield, error) {
	if !cfg.Jobs.YieldToHTTP {
		return nil, nil
	}
	y, err := autoscale.NewYield(autoscale.YieldOptions{Pool: jobsRT.Pool(), SetLimit: jobsRT.SetYield, Cores: rt.GOMAXPROCS,
		MinWorkers: cfg.Jobs.YieldMinWorkers, CPUWaitLimit: cfg.Jobs.YieldCPUWait, Logger: log})
	if err != nil {
		return nil, err
	}
	if err := y.Start(ctx); err != nil {
		return nil, err
	}
	mx.RegisterYield(jobsRT.Yield)
	return y, nil
}
