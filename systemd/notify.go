// Package systemd speaks systemd's notify protocol for a Type=notify service: READY=1 once tandem
// serves, STOPPING=1 when it drains, STATUS= lines, and WATCHDOG=1 pings while a health check
// passes, so a stuck store gets the service restarted. Without NOTIFY_SOCKET every call is a no-op.
package systemd

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	// Logger for watchdog failures. Default slog.Default().
	Logger *slog.Logger
	// Health is checked before each watchdog ping; an error skips the ping. Optional.
	Health func(ctx context.Context) error
	// HealthTimeout bounds each check. Default 2s.
	HealthTimeout time.Duration
}

// Notifier sends notifications to systemd.
type Notifier struct {
	opts NotifierOptions
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// NewNotifier returns a Notifier; it starts nothing until Start.
func NewNotifier(opts NotifierOptions) *Notifier {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.HealthTimeout = cmp.Or(opts.HealthTimeout, 2*time.Second)
	return &Notifier{opts: opts}
}

func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("systemd notify: %w", err)
	}
	return nil
}

// Ready tells systemd the service is up.
func (n *Notifier) Ready(status string) error {
	return notify(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Stopping tells systemd the service is shutting down.
func (n *Notifier) Stopping(status string) error {
	return notify(daemon.SdNotifyStopping + "\nSTATUS=" + status)
}

// Start starts the watchdog loop when systemd asked for one (WATCHDOG_USEC): it pings at half the
// interval, and only while Health passes.
func (n *Notifier) Start(ctx context.Context) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("systemd watchdog: %w", err)
	}
	if interval == 0 {
		return nil
	}
	ctx, n.stop = context.WithCancel(context.WithoutCancel(ctx))
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			if n.healthy(ctx) {
				_ = notify(daemon.SdNotifyWatchdog)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

func (n *Notifier) healthy(ctx context.Context) bool {
	if n.opts.Health == nil {
		return true
	}
	hctx, cancel := context.WithTimeout(ctx, n.opts.HealthTimeout)
	defer cancel()
	if err := n.opts.Health(hctx); err != nil {
		n.opts.Logger.Error("health check failed; withholding the systemd watchdog ping", "err", err)
		return false
	}
	return true
}

// Stop stops the watchdog loop and waits for it.
func (n *Notifier) Stop() {
	if n.stop != nil {
		n.stop()
	}
	n.wg.Wait()
}
