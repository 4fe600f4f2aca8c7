package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-run/tandem/jobs"
)

// Options configure a Store. Zero values mean the documented defaults.
type Options struct {
	// URL is the database, postgres://user:password@host:port/db?sslmode=... (or a key=value
	// string). Required. Logs and errors show it through Redact.
	URL string
	// Logger receives the store's own failures (a lost LISTEN connection, a failed commit).
	// Default slog.Default().
	Logger *slog.Logger
	// MaxConns is the connection pool's size: the committer takes one at a time, the LISTEN
	// connection is apart, reads (Get, List, Queues, Renew, Heartbeat) share the rest. Default 10.
	MaxConns int
	// PollInterval is how often the store recounts the ready jobs and paused queues behind Ready
	// and Paused, in case a notification was lost (the LISTEN connection was down). Default 1s.
	PollInterval time.Duration
	// ConnectTimeout bounds Open's wait for the database (it retries a refused connection until
	// then, so replicas may start before Postgres does) and each later dial. Default 10s.
	ConnectTimeout time.Duration
	// CommitTimeout bounds one group commit, from its BEGIN to its COMMIT: past it, every request
	// of the batch fails. Default 30s.
	CommitTimeout time.Duration
	// MaxBatch is the most requests one commit carries. Default 1000.
	MaxBatch int
	// VacuumEvery is how many rows this process writes between two VACUUMs of the jobs table,
	// which the poll runs (SKIP_LOCKED: a replica finding another's under way skips it). Each
	// write leaves a dead tuple in the ready index's head, which every lease scans past until a
	// vacuum, and autovacuum only looks every autovacuum_naptime (60s by default): a 20,000-job
	// drain ran at half speed without it. Default 10,000; negative: never (autovacuum alone).
	VacuumEvery int
	// OnCommit, when set, is called after each commit with its duration and request count.
	OnCommit func(d time.Duration, requests int)
	// Now is the clock for the records' timestamps, leases and heartbeats. Default time.Now. The
	// replicas' clocks are assumed in step (NTP): leases and leadership compare times they wrote.
	Now func() time.Time
}

// Store is a job store on a Postgres database that several processes share (jobs.Shared). Its
// methods are safe for concurrent use.
type Store struct {
	opts Options
	pool *pgxpool.Pool
	cfg  *pgxpool.Config
	self string // this instance's lease token (leased_by): a Renew from another one finds it lost

	churn   atomic.Int64  // rows written since the last VACUUM (VacuumEvery)
	reqs    chan *request // the committer of every write but inserts
	ins     chan *request // the committer of inserts (sendOn)
	stop    chan struct{} // closed by Close: the committer drains and returns
	closed  atomic.Bool
	closeMu sync.RWMutex // held for reading while sending a request, so Close can drain safely

	bgCancel context.CancelFunc // stops the listener and the poller
	wg       sync.WaitGroup     // the committer, the listener, the poller

	est      estimate
	commitMu sync.Mutex    // held from a COMMIT to the estimate's update, and by a recount's snapshot
	changes  chan struct{} // Changes: cap 1, sends coalesce
	refresh  chan struct{} // asks the poller for a recount now: cap 1

	pidMu sync.Mutex
	pids  map[uint32]bool // the backends of our pool: their notifications are our own commits
}

// Open connects to the database (retrying until ConnectTimeout), applies the pending migrations
// under an advisory lock, counts the ready jobs, and starts the committer, the LISTEN connection
// and the fallback poll; Close stops them. ErrSchemaNewer when a newer tandem migrated the database.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.URL == "" {
		return nil, errors.New("postgres: Options.URL is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.MaxConns = cmp.Or(o.MaxConns, 10)
	o.PollInterval = cmp.Or(o.PollInterval, time.Second)
	o.ConnectTimeout = cmp.Or(o.ConnectTimeout, 10*time.Second)
	o.CommitTimeout = cmp.Or(o.CommitTimeout, 30*time.Second)
	o.MaxBatch = cmp.Or(o.MaxBatch, 1000)
	o.VacuumEvery = cmp.Or(o.VacuumEvery, 10_000)
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse URL %s: %w", Redact(o.URL), errors.Unwrap(err))
	}
	where := describe(cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	cfg.MaxConns = int32(o.MaxConns)
	cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	s := &Store{
		opts: o, cfg: cfg, self: uuid.NewString(),
		reqs: make(chan *request, 4096), ins: make(chan *request, 4096), stop: make(chan struct{}),
		changes: make(chan struct{}, 1), refresh: make(chan struct{}, 1),
		pids: map[uint32]bool{},
	}
	s.est.init()
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		s.pidMu.Lock()
		s.pids[c.PgConn().PID()] = true
		s.pidMu.Unlock()
		return nil
	}
	cfg.BeforeClose = func(c *pgx.Conn) {
		s.pidMu.Lock()
		delete(s.pids, c.PgConn().PID())
		s.pidMu.Unlock()
	}
	s.pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", where, err)
	}
	octx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	if err := s.waitReachable(octx); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s (gave up after %s): %w", where, o.ConnectTimeout, err)
	}
	if _, err := migrate(octx, s.pool); err != nil {
		s.pool.Close()
		return nil, err
	}
	if err := s.recount(octx); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("postgres: %s: %w", where, err)
	}
	bg, bgCancel := context.WithCancel(context.Background())
	s.bgCancel = bgCancel
	s.wg.Add(4)
	go s.commitLoop(s.reqs)
	go s.commitLoop(s.ins)
	go s.listen(bg)
	go s.poll(bg)
	return s, nil
}

// waitReachable pings until the database answers or ctx ends.
func (s *Store) waitReachable(ctx context.Context) error {
	for {
		err := s.pool.Ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close runs the requests already sent, fails later ones with jobs.ErrStoreClosed, stops every
// goroutine the store started, waits for them, and closes the pool.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed.Swap(true) {
		s.closeMu.Unlock()
		return nil
	}
	close(s.stop)
	s.closeMu.Unlock()
	s.bgCancel()
	s.wg.Wait()
	s.pool.Close()
	return nil
}

// Changes receives when another process may have made jobs ready or resumed a queue (a
// notification, or a recount that found more ready jobs than the estimate).
func (s *Store) Changes() <-chan struct{} { return s.changes }

func (s *Store) signal() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Pool returns the store's connection pool, for a caller's own transactions (InsertTx).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

var passwordKV = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Redact returns the URL with its password replaced by "xxxxx", for logs and errors. It handles
// both forms pgx accepts: a URL (postgres://user:pass@host/db?password=...) and key=value pairs;
// a URL that does not parse is not shown at all.
func Redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Scheme != "" {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	if strings.Contains(rawURL, "://") {
		// A URL that does not parse: where its password sits cannot be told.
		return "(not shown: not a URL)"
	}
	return passwordKV.ReplaceAllString(rawURL, "${1}xxxxx")
}

func describe(host string, port uint16, db string) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port))) + "/" + db
}

// The Store is a jobs.Shared backend that can insert inside a caller's transaction.
var (
	_ jobs.Shared  = (*Store)(nil)
	_ jobs.TxStore = (*Store)(nil)
)
