// Command h1plain is benchmark H1's baseline (bench/http.sh): tandem's own main router, with the
// same request ids, body limit, metrics middleware and http.Server timeouts, but without the
// threads pool in front of it (server.Options.Threads nil). With -metrics=false it also drops the
// metrics middleware: the baseline of the metrics cost figure.
package main

import (
	"context"
	"flag"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/tandem-run/tandem/metrics"
	"github.com/tandem-run/tandem/server"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "listen address (loopback)")
	withMetrics := flag.Bool("metrics", true, "count requests with tandem's metrics middleware")
	flag.Parse()
	opts := server.Options{
		Addr: *addr, AdminAddr: "127.0.0.1:0", DemoRoutes: true,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if *withMetrics {
		mx := metrics.New(metrics.Options{})
		opts.Middleware, opts.Metrics = []func(http.Handler) http.Handler{mx.Middleware}, mx.Handler()
	}
	srv, err := server.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
	_ = srv.Shutdown(context.Background())
}
