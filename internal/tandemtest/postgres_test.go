package tandemtest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

func TestMain(m *testing.M) { os.Exit(tandemtest.RunWithPostgres(m)) }

func query(t *testing.T, url, sql string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var s string
	err = conn.QueryRow(ctx, sql).Scan(&s)
	return s, err
}

func exec(t *testing.T, url, sql string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// TestPostgresGivesEachTestItsOwnDatabase: two calls give two databases, each empty and writable,
// so a table one test creates is not seen by another.
func TestPostgresGivesEachTestItsOwnDatabase(t *testing.T) {
	a, b := tandemtest.Postgres(t), tandemtest.Postgres(t)
	if a == b {
		t.Fatalf("two calls gave one database: %s", a)
	}
	if err := exec(t, a, "CREATE TABLE mine (x int)"); err != nil {
		t.Fatalf("create table in %s: %v", a, err)
	}
	if _, err := query(t, b, "SELECT 'x' FROM mine"); err == nil {
		t.Fatalf("database %s sees the table created in %s", b, a)
	}
	dbA, err := query(t, a, "SELECT current_database()")
	if err != nil {
		t.Fatal(err)
	}
	dbB, _ := query(t, b, "SELECT current_database()")
	if dbA == dbB {
		t.Fatalf("both URLs connect to %s", dbA)
	}
	if fsync, err := query(t, a, "SHOW fsync"); err != nil || (os.Getenv(tandemtest.PostgresURLEnv) == "" && fsync != "off") {
		t.Fatalf("fsync = %q, %v; the started server runs with fsync=off", fsync, err)
	}
}

// TestStartPostgresStopsAndRestarts: a server of the test's own refuses connections while stopped
// and serves the same data on the same port once started again.
func TestStartPostgresStopsAndRestarts(t *testing.T) {
	srv := tandemtest.StartPostgres(t)
	db := srv.NewDatabase(t)
	if err := exec(t, db, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := query(t, db, "SELECT 'up'"); err == nil {
		t.Fatal("a stopped server answered")
	}
	srv.Start()
	got, err := query(t, db, "SELECT x::text FROM kept")
	if err != nil || got != "7" {
		t.Fatalf("after restart: %q, %v; want the row written before the stop", got, err)
	}
}
