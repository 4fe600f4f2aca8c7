package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/tandemtest"
)

// withPassword puts a password into a test database's URL: the test servers trust loopback
// connections, so it is never checked, but every output can be searched for it.
func withPassword(url string) string {
	return strings.Replace(url, "postgres://postgres@", "postgres://postgres:"+testPassword+"@", 1)
}

const testPassword = "s3cr3t-pw-never-shown"

// TestMigrateBbolt: with store.backend bbolt, status says there is nothing to migrate (exit 0)
// and up refuses (exit 2), naming the keys that would point it at a database.
func TestMigrateBbolt(t *testing.T) {
	t.Parallel()
	r := runCmd(t, nil, "migrate", "--config", emptyConfig(t))
	if r.code != 0 || !strings.Contains(r.stdout, "bbolt, which has no schema to migrate") {
		t.Errorf("migrate (status): %+v", r)
	}
	r = runCmd(t, nil, "--json", "migrate", "status", "--config", emptyConfig(t))
	var rep migrateReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil || rep.Backend != "bbolt" || rep.Pending == nil {
		t.Errorf("migrate --json status: %+v (%v)", r, err)
	}
	r = runCmd(t, nil, "migrate", "up", "--config", emptyConfig(t))
	if r.code != exitConfig || !strings.Contains(r.stderr, "store.backend: postgres and store.url") {
		t.Errorf("migrate up: %+v, want exit 2 naming store.backend and store.url", r)
	}
	if r := runCmd(t, nil, "migrate", "down", "--config", emptyConfig(t)); r.code != exitConfig || !strings.Contains(r.stderr, "the verbs are status, up") {
		t.Errorf("migrate down: %+v", r)
	}
}

// TestMigratePostgres: on a fresh database status lists every migration as pending, up applies
// them and says which, then status and a second up find nothing to do. The URL comes from
// TANDEM_STORE_URL and is shown with its password hidden.
func TestMigratePostgres(t *testing.T) {
	t.Parallel()
	env := []string{"TANDEM_STORE_BACKEND=postgres", "TANDEM_STORE_URL=" + withPassword(tandemtest.Postgres(t))}
	migrate := func(args ...string) migrateReport {
		t.Helper()
		r := runCmd(t, env, append([]string{"migrate", "--json", "--config", emptyConfig(t)}, args...)...)
		var rep migrateReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil {
			t.Fatalf("migrate %v: %+v (%v)", args, r, err)
		}
		if strings.Contains(r.stdout+r.stderr, testPassword) || !strings.Contains(rep.Store, "postgres:xxxxx@127.0.0.1") {
			t.Fatalf("migrate %v shows the password, or not the store: %+v", args, r)
		}
		return rep
	}
	before := migrate("status")
	if before.Backend != "postgres" || before.Current != 0 || before.Latest < 1 || len(before.Pending) != before.Latest || before.Pending[0].Version != 1 || before.Pending[0].Name == "" {
		t.Fatalf("status of a fresh database: %+v", before)
	}
	up := migrate("up")
	if up.Applied == nil || len(*up.Applied) != before.Latest || (*up.Applied)[0] != before.Pending[0] || up.Current != up.Latest || len(up.Pending) != 0 {
		t.Fatalf("up: %+v", up)
	}
	if after := migrate("status"); after.Current != after.Latest || len(after.Pending) != 0 || after.Applied != nil {
		t.Fatalf("status after up: %+v", after)
	}
	if again := migrate("up"); again.Applied == nil || len(*again.Applied) != 0 {
		t.Fatalf("a second up: %+v, want nothing applied", again)
	}
	// The table says the same.
	r := runCmd(t, env, "migrate", "status", "--config", emptyConfig(t))
	if r.code != 0 || !strings.Contains(r.stdout, "pending  none") || !strings.Contains(r.stdout, fmt.Sprintf("current  %d\n", before.Latest)) {
		t.Fatalf("migrate status (table): %+v", r)
	}
}

// TestMigrateUnreachable: a database that does not answer is exit 1, naming where it looked,
// never the password.
func TestMigrateUnreachable(t *testing.T) {
	t.Parallel()
	url := "postgres://tandem:" + testPassword + "@127.0.0.1:" + itoa(tandemtest.FreePort(t)) + "/tandem?sslmode=disable&connect_timeout=2"
	r := runCmd(t, []string{"TANDEM_STORE_BACKEND=postgres", "TANDEM_STORE_URL=" + url}, "migrate", "status", "--config", emptyConfig(t))
	if r.code != exitFail || strings.Contains(r.stderr, testPassword) || !strings.Contains(r.stderr, "127.0.0.1") {
		t.Fatalf("migrate status, nothing listening: %+v", r)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
