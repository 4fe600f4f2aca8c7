package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-run/tandem/store/postgres"
)

// migrateVerbs are tandem migrate's verbs; status, the one that changes nothing, is the default.
var migrateVerbs = []string{"status", "up"}

// migrationView is one migration as tandem migrate --json shows it.
type migrationView struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
}

// migrateReport is what tandem migrate --json prints.
type migrateReport struct {
	Backend string           `json:"backend"`
	Store   string           `json:"store"` // the URL, its password hidden
	Current int              `json:"current"`
	Latest  int              `json:"latest"`
	Pending []migrationView  `json:"pending"`
	Applied *[]migrationView `json:"applied,omitempty"` // up only: [] when there was nothing to apply
	Note    string           `json:"note,omitempty"`
}

// runMigrate is `tandem migrate [status|up]` against the Postgres database of store.url, read
// from the same layers as serve's (config file, TANDEM_STORE_URL, --store.url). serve applies
// pending migrations itself at start; up applies them ahead (a deploy step), status only reads.
//
// With store.backend bbolt there is nothing to migrate: status says so and exits 0 (a true
// answer), up is a usage error (exit 2), since asking to migrate a database that the
// configuration does not name is most likely a forgotten TANDEM_STORE_BACKEND=postgres, which a
// silent success would hide from a deploy pipeline.
func runMigrate(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", "[status|up] [--json] [--timeout D] [config flags]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this (connecting and migrating)")
	registerConfigFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	verb, err := checkVerb(fs.Arg(0), migrateVerbs)
	if err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError{fmt.Errorf("%s takes no argument, not %q", verb, fs.Arg(1))}
	}
	path, _ := fs.GetString("config")
	l, err := loadConfig(LoadOptions{ConfigPath: path, Flags: fs, Environ: env})
	if err != nil {
		return err
	}
	sc := l.Config.Store
	if sc.Backend != "postgres" {
		const why = "store.backend is bbolt, which has no schema to migrate"
		if verb == "up" {
			return usageError{fmt.Errorf("%s; to migrate a Postgres database set store.backend: postgres and store.url (TANDEM_STORE_BACKEND, TANDEM_STORE_URL)", why)}
		}
		return printMigrate(stdout, *asJSON, migrateReport{Backend: sc.Backend, Store: sc.Path, Pending: []migrationView{}, Note: why})
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	where := redactURL(sc.URL)
	st, err := postgres.Status(ctx, sc.URL)
	if err != nil {
		return fmt.Errorf("migration status of %s: %w", where, err)
	}
	rep := migrateReport{Backend: sc.Backend, Store: where, Current: st.Current, Latest: st.Latest, Pending: views(st.Pending)}
	if st.Current > st.Latest {
		_ = printMigrate(stdout, *asJSON, rep)
		return fmt.Errorf("%s: %w (version %d, this tandem knows up to %d): run the newer tandem", where, postgres.ErrSchemaNewer, st.Current, st.Latest)
	}
	if verb == "up" {
		applied, err := postgres.Migrate(ctx, sc.URL)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", where, err)
		}
		done := []migrationView{}
		for _, v := range applied {
			name := ""
			if i := slices.IndexFunc(rep.Pending, func(m migrationView) bool { return m.Version == v }); i >= 0 {
				name = rep.Pending[i].Name
			}
			done = append(done, migrationView{Version: v, Name: name})
			rep.Current = max(rep.Current, v)
		}
		rep.Applied = &done
		rep.Pending = slices.DeleteFunc(rep.Pending, func(m migrationView) bool { return slices.Contains(applied, m.Version) })
	}
	return printMigrate(stdout, *asJSON, rep)
}

func views(ms []postgres.Migration) []migrationView {
	out := make([]migrationView, len(ms))
	for i, m := range ms {
		out[i] = migrationView{Version: m.Version, Name: m.Name}
	}
	return out
}

func printMigrate(w io.Writer, asJSON bool, r migrateReport) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	if r.Note != "" {
		_, err := fmt.Fprintf(w, "%s (%s): nothing to do\n", r.Note, r.Store)
		return err
	}
	list := func(ms []migrationView) string {
		if len(ms) == 0 {
			return "none"
		}
		names := make([]string, len(ms))
		for i, m := range ms {
			names[i] = fmt.Sprintf("%04d_%s", m.Version, m.Name)
		}
		return strings.Join(names, " ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "store    %s\n", r.Store)
	if r.Applied != nil {
		fmt.Fprintf(&b, "applied  %s\n", list(*r.Applied))
	}
	fmt.Fprintf(&b, "current  %s\nlatest   %d\npending  %s\n", strconv.Itoa(r.Current), r.Latest, list(r.Pending))
	_, err := io.WriteString(w, b.String())
	return err
}
