// Command h1plain is benchmark H1's baseline (bench/http.sh): tandem's own main router, with the
// same request ids, body limit, metrics middleware and http.Server timeouts, but without the
// threads pool in front of it (server.Options.Threads nil). With -metrics=false it also drops the
// metrics middleware: the baseline of the metrics cost figure. With -bare it serves /demo/hello
// from a plain chi router and nothing of tandem's: the floor that every layer is measured from.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tandem-run/tandem/metrics"
	"github.com/tandem-run/tandem/server"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "listen address (loopback)")
	withMetrics := flag.Bool("metrics", true, "count requests with tandem's metrics middleware")
	bare := flag.Bool("bare", false, "a plain chi router with /demo/hello, none of tandem's layers")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *bare {
		serveBare(ctx, *addr)
		return
	}
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
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
	_ = srv.Shutdown(context.Background())
}

// serveBare serves the same answer as tandem's /demo/hello from chi alone, until ctx ends.
func serveBare(ctx context.Context, addr string) {
	r := chi.NewRouter()
	r.Get("/demo/hello", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("hello from tandem\n"))
	})
	hs := &http.Server{Addr: addr, Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = hs.Shutdown(context.Background())
	}()
	if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
