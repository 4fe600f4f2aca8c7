package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrSchemaNewer means the database's schema is newer than this binary's: a newer tandem migrated
// it. Open refuses it rather than write records the newer code may not read.
var ErrSchemaNewer = errors.New("database schema is newer than this tandem")

// migrateLock is the key of the advisory lock that migrations run under, so that replicas
// starting together apply them once: "tandem" in ASCII.
const migrateLock = 0x74616e64656d

// Migration is one versioned schema change, from migrations/NNNN_name.sql.
type Migration struct {
	Version int
	Name    string
	sql     string
}

// MigrationStatus is where a database's schema stands.
type MigrationStatus struct {
	Current int         // the latest version applied; 0 for an empty database
	Latest  int         // the latest version this binary has
	Pending []Migration // the versions this binary would apply, in order
}

// migrations returns the embedded migrations, sorted by version.
func migrations() ([]Migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration file %s: want NNNN_name.sql", n)
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, sql: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i := range out {
		if out[i].Version != i+1 {
			return nil, fmt.Errorf("postgres: migrations must be numbered 1, 2, ...: found %d at position %d", out[i].Version, i+1)
		}
	}
	return out, nil
}

func latestVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

// Migrate applies the pending migrations to the database at url (what `tandem migrate up` does)
// and returns the versions it applied. They run in one transaction under an advisory lock, so
// processes migrating at once apply each version once, and a failure applies none.
func Migrate(ctx context.Context, url string) (applied []int, err error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return migrate(ctx, conn)
}

// Status reports the schema's version, the latest this binary has, and the pending migrations
// (what `tandem migrate status` prints). It writes nothing.
func Status(ctx context.Context, url string) (MigrationStatus, error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return MigrationStatus{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ms, err := migrations()
	if err != nil {
		return MigrationStatus{}, err
	}
	st := MigrationStatus{Latest: latestVersion()}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('tandem_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return st, fmt.Errorf("postgres: migration status: %w", err)
	}
	if exists {
		if err := conn.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM tandem_migrations`).Scan(&st.Current); err != nil {
			return st, fmt.Errorf("postgres: migration status: %w", err)
		}
	}
	for _, m := range ms {
		if m.Version > st.Current {
			st.Pending = append(st.Pending, m)
		}
	}
	return st, nil
}

func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse URL %s: %w", Redact(url), err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect to %s: %w", describe(cfg.Host, cfg.Port, cfg.Database), err)
	}
	return conn, nil
}

// querier is what migrate needs of a connection or a pool.
type querier interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

func migrate(ctx context.Context, db querier) (applied []int, err error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// The lock comes first: CREATE TABLE IF NOT EXISTS itself races when two sessions run it at once.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return nil, fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS tandem_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("postgres: migrate: create tandem_migrations: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM tandem_migrations`).Scan(&current); err != nil {
		return nil, fmt.Errorf("postgres: migrate: read version: %w", err)
	}
	if latest := ms[len(ms)-1].Version; current > latest {
		return nil, fmt.Errorf("%w: the database is at version %d, this tandem knows up to %d", ErrSchemaNewer, current, latest)
	}
	for _, m := range ms {
		if m.Version <= current {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return nil, fmt.Errorf("postgres: migration %04d_%s: %w", m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tandem_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return nil, fmt.Errorf("postgres: migration %04d_%s: record: %w", m.Version, m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres: migrate: commit: %w", err)
	}
	return applied, nil
}
