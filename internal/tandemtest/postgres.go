package tandemtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresURLEnv names the variable that points the tests at a Postgres server of the caller's
// own (a superuser URL, e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable): each
// test still gets a fresh database on it. Without it the test binary starts a server of its own.
const PostgresURLEnv = "TANDEM_TEST_POSTGRES_URL"

// The server shared by the tests of one binary, started by the first Postgres call.
var shared struct {
	mu      sync.Mutex
	main    bool            // RunWithPostgres is running the tests
	srv     *PostgresServer // nil until started, or when PostgresURLEnv is set
	err     error           // why it could not start; sticks, so every test reports it
	skip    string          // why tests skip (no Postgres installed, not on CI)
	started bool
}

var dbSeq atomic.Int64

// RunWithPostgres runs the tests (m.Run) and then stops the Postgres server the binary started,
// so no postgres process outlives them. Call it from TestMain: os.Exit(tandemtest.RunWithPostgres(m)).
// Postgres fails a test whose binary does not, rather than leaving a server behind.
func RunWithPostgres(m *testing.M) int {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		if err := shared.srv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "tandemtest: stopping the test Postgres: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		os.RemoveAll(shared.srv.dir)
		shared.srv = nil
	}
	return code
}

// Postgres returns the URL of a fresh, empty database of the test's own, on the server named by
// TANDEM_TEST_POSTGRES_URL or else on one the test binary starts once (see RunWithPostgres). The
// database is dropped at the test's cleanup, connections and all. Without Postgres installed the
// test skips, or fails when CI=true.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := sharedAdminURL(t)
	return createDatabase(t, admin)
}

func sharedAdminURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(PostgresURLEnv); u != "" {
		return u
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatal("tandemtest.Postgres: the test binary must run its tests through tandemtest.RunWithPostgres in TestMain, which stops the server it starts")
	}
	if !shared.started {
		shared.started = true
		bin, err := postgresBin()
		if err != nil {
			shared.skip = err.Error()
		} else {
			shared.srv, shared.err = startServer(bin)
		}
	}
	if shared.skip != "" {
		missingPostgres(t, shared.skip)
	}
	if shared.err != nil {
		t.Fatalf("tandemtest: starting the test Postgres: %v", shared.err)
	}
	return shared.srv.URL("postgres")
}

func missingPostgres(t testing.TB, why string) {
	t.Helper()
	msg := fmt.Sprintf("no Postgres for this test: %s; install the server (apt-get install postgresql: initdb and pg_ctl in /usr/lib/postgresql/<version>/bin) or set %s to a superuser URL", why, PostgresURLEnv)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// createDatabase creates t_<pid>_<n> on the server at admin and returns its URL. The pid keeps
// the names of test binaries that share one server (TANDEM_TEST_POSTGRES_URL) apart.
func createDatabase(t testing.TB, admin string) string {
	t.Helper()
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("tandemtest: connecting to the test Postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("tandemtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("tandemtest: dropping database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("tandemtest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("tandemtest: %s: %v", PostgresURLEnv, err)
	}
	u.Path = "/" + name
	return u.String()
}

// PostgresServer is a Postgres server a test started for itself, to stop and restart it.
type PostgresServer struct {
	t    testing.TB // nil for the binary's shared server
	bin  string     // the directory of initdb and pg_ctl
	dir  string     // holds data/, the socket and the log
	port int
	cred *syscall.Credential // run as user postgres when we are root

	mu      sync.Mutex
	running bool
}

// StartPostgres starts a Postgres server of the test's own (on a temporary directory and a free
// loopback port), stopped and removed at the test's cleanup. It skips like Postgres does.
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	bin, err := postgresBin()
	if err != nil {
		missingPostgres(t, err.Error())
	}
	s, err := startServer(bin)
	if err != nil {
		t.Fatalf("tandemtest: starting a Postgres: %v", err)
	}
	s.t = t
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("tandemtest: stopping Postgres: %v", err)
		}
		os.RemoveAll(s.dir)
	})
	return s
}

// URL returns the URL of database db (the server has "postgres"; see NewDatabase) as superuser postgres.
func (s *PostgresServer) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// NewDatabase creates a fresh database on the server and returns its URL.
func (s *PostgresServer) NewDatabase(t testing.TB) string {
	t.Helper()
	return createDatabase(t, s.URL("postgres"))
}

// Addr returns the server's host:port.
func (s *PostgresServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Stop stops the server (pg_ctl stop -m fast: connections are cut), failing the test on error.
func (s *PostgresServer) Stop() {
	s.t.Helper()
	if err := s.stop(); err != nil {
		s.t.Fatalf("tandemtest: stopping Postgres: %v", err)
	}
}

// Start starts the stopped server again, on the same port and data.
func (s *PostgresServer) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("tandemtest: restarting Postgres: %v", err)
	}
}

// postgresBin finds the newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, or the
// directory of pg_ctl on PATH.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		d := filepath.Dir(p)
		if isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	return "", errors.New("found no initdb and pg_ctl in /usr/lib/postgresql/*/bin or on PATH")
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// startServer runs initdb in a new temporary directory and starts the server on a free port,
// trying another port if the one picked was taken meanwhile.
func startServer(bin string) (*PostgresServer, error) {
	dir, err := os.MkdirTemp("", "tandem-pg-")
	if err != nil {
		return nil, err
	}
	s := &PostgresServer{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, and no user postgres to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if out, err := s.run("initdb", "-D", s.data(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if err = s.start(); err == nil {
			s.watch()
			return s, nil
		} else if try == 2 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// watch starts a watchdog that stops the server and removes its directory once this process is
// gone, should it die without stopping it (a panic, a test timeout, a kill): a shell loop, not a
// goroutine, since nothing of this process runs then. It is not waited for: it ends within a
// second of this process.
func (s *PostgresServer) watch() {
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 1; done
p=$(head -1 %s/postmaster.pid 2>/dev/null)
if [ -n "$p" ]; then kill -INT "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.2; done; fi
rm -rf %s`, os.Getpid(), s.data(), s.dir)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not in the test's process group
	if cmd.Start() == nil {
		_ = cmd.Process.Release()
	}
}

func (s *PostgresServer) data() string { return filepath.Join(s.dir, "data") }

func (s *PostgresServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	// fsync and full_page_writes off: the tests test tandem, not Postgres's own durability.
	// 200 connections: three replicas' pools and the tests' own.
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off -c max_connections=200", s.port, s.dir)
	logFile := filepath.Join(s.dir, "log")
	if out, err := s.run("pg_ctl", "start", "-w", "-t", "60", "-D", s.data(), "-l", logFile, "-o", opts); err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("pg_ctl start on port %d: %w\n%s\n%s", s.port, err, out, tail(string(log), 2000))
	}
	s.running = true
	return nil
}

func (s *PostgresServer) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	s.running = false
	if out, err := s.run("pg_ctl", "stop", "-w", "-m", "fast", "-D", s.data()); err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

func (s *PostgresServer) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
