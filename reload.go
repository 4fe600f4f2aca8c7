package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/server"
)

// logging is the process logger with a level that SIGHUP can change.
type logging struct {
	logger *slog.Logger
	level  *slog.LevelVar
}

func newLogging(w io.Writer, c LogConfig) logging {
	lv := new(slog.LevelVar)
	lv.Set(parseLevel(c.Level))
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if c.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return logging{logger: slog.New(h), level: lv}
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s)) // validated by the schema
	return l
}

// liveKeys can change without a restart; SIGHUP applies them.
var liveKeys = map[string]bool{
	"server.threads": true, "server.backlog": true, "jobs.concurrency": true, "log.level": true,
	"log.access": true, "log.slow_request": true,
}

// live is what SIGHUP can change in the running process.
type live struct {
	httpPool *pool.Pool // for its backlog; sizes go through the door
	limits   *limits    // sizes, through the door, never across a limits change
	srv      *server.Server
}

// reload re-reads the configuration (same file, environment env and flags as at start), applies
// the knobs that can change live and reports the others as needing a restart. A configuration that
// no longer loads changes nothing.
func reload(start *Loaded, fs *pflag.FlagSet, env []string, logs logging, to live, log *slog.Logger) {
	path, _ := fs.GetString("config")
	next, err := loadConfig(LoadOptions{ConfigPath: path, Flags: fs, Environ: env})
	if err != nil {
		log.Error("reload: configuration rejected; nothing changed", "err", err)
		return
	}
	var applied, restart []string
	for _, key := range sortedKeys(next.Values) {
		old, now := start.Values[key], next.Values[key]
		if reflect.DeepEqual(old, now) {
			continue
		}
		if !liveKeys[key] {
			restart = append(restart, key)
			continue
		}
		if err := applyLive(key, now, logs, to); err != nil {
			log.Error("reload: not applied", "key", key, "err", err)
			continue
		}
		applied = append(applied, key)
		log.Info("reload: applied", "key", key, "old", printable(key, old), "new", printable(key, now))
		start.Values[key] = now
	}
	if len(restart) > 0 {
		log.Warn("reload: changed keys need a restart to take effect", "keys", strings.Join(restart, ","))
	}
	log.Info("reload done", "applied", len(applied), "need_restart", len(restart))
}

func applyLive(key string, v any, logs logging, to live) error {
	switch key {
	case "server.threads":
		return to.limits.resizeConfigured(context.Background(), "http", v.(int)) // auto follows the limits again
	case "server.backlog":
		_, err := to.httpPool.SetBacklog(v.(int))
		return err
	case "jobs.concurrency":
		return to.limits.resizeConfigured(context.Background(), "jobs", v.(int)) // wakes the dispatcher
	case "log.level":
		logs.level.Set(parseLevel(v.(string)))
		return nil
	case "log.access":
		to.srv.SetAccessLog(accessLog(v.(string)))
		return nil
	case "log.slow_request":
		to.srv.SetSlowRequest(v.(time.Duration))
		return nil
	}
	return fmt.Errorf("%s cannot change live", key)
}
