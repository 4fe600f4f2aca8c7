// Command tandem serves HTTP and runs durable background jobs in one process, sized from the
// container's CPU quota. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	// The zone database, for jobs.periodic's timezone: the release binary also runs outside the
	// Docker image (systemd, scratch images) on hosts that may have no /usr/share/zoneinfo, where
	// a configured zone would stop the start. The system's database is still read first; this
	// costs about 450 KB of binary.
	_ "time/tzdata"

	"github.com/spf13/pflag"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFail   = 1 // a runtime failure: the store is locked, a server is down, a job failed to enqueue
	exitConfig = 2 // bad flags or configuration: fix the command line or the file
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// command is one subcommand. env is the process environment (NAME=value, the last of a name
// wins): commands read configuration and their own variables from it, never from os.Getenv, so
// tests run them in-process, in parallel, each with its own environment.
type command struct {
	name, summary string
	run           func(ctx context.Context, args, env []string, stdout, stderr io.Writer) error
}

func commands() []command {
	verbs := func(v []string) string { return strings.Join(v, "|") }
	return []command{
		{"serve", "run the HTTP server and the job workers (the default)", runServe},
		{"config", "print the effective configuration (--sources: where each value came from)", runConfig},
		{"check-config", "validate the configuration and exit", runCheckConfig},
		{"version", "print version, commit, build date and Go version", runVersion},
		{"healthcheck", "exit 0 when tandem answers /readyz with 200 (for container HEALTHCHECK)", runHealthcheck},
		{"enqueue", "enqueue a job on a running tandem: enqueue KIND [--payload JSON]", runEnqueue},
		{"jobs", verbs(jobsVerbs) + " jobs on a running tandem", runJobs},
		{"queues", verbs(queuesVerbs) + " queues on a running tandem", runQueues},
		{"pools", verbs(poolsVerbs) + " the pools of a running tandem", runPools},
		{"nodes", "list the replicas sharing a running tandem's job store (postgres)", runNodes},
		{"migrate", verbs(migrateVerbs) + " the Postgres schema of store.url (serve also migrates at start)", runMigrate},
		{"periodic", verbs(periodicVerbs) + " the periodic schedules of a running tandem", runPeriodic},
	}
}

// commandOf splits args into the command and its arguments. The client flags (--server, --admin,
// --config, --json) may come before the command ('tandem --server URL jobs retry ID') and are
// passed on to it. Without a command word, the command is serve with every argument
// ('tandem --threads 16').
func commandOf(args []string) (string, []string) {
	global := pflag.NewFlagSet("", pflag.ContinueOnError)
	addClientFlags(global, nil)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return a, append(append([]string(nil), args[:i]...), args[i+1:]...)
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := global.Lookup(name)
		if f == nil || a == "--" {
			break // a serve flag: 'tandem --threads 16'
		}
		if !hasValue && f.NoOptDefVal == "" {
			i++ // the flag's value is the next argument
		}
	}
	return "serve", args
}

// run dispatches to a subcommand with the environment env and maps its error to an exit status.
func run(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		usage(stdout) // the commands first; 'tandem serve --help' lists the default's flags
		return exitOK
	}
	name, args := commandOf(args)
	if name == "help" {
		if len(args) == 0 {
			usage(stdout)
			return exitOK
		}
		name, args = args[0], []string{"--help"} // 'tandem help CMD' as 'tandem CMD --help'
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(ctx, args, env, stdout, stderr)
		var ee exitError // a status of the command's own (jobs wait)
		switch {
		case err == nil, errors.Is(err, pflag.ErrHelp):
			return exitOK
		case isUsageError(err):
			fmt.Fprintf(stderr, "tandem %s: %v\n", name, err)
			return exitConfig
		case errors.As(err, &ee):
			fmt.Fprintf(stderr, "tandem %s: %v\n", name, err)
			return ee.code
		default:
			fmt.Fprintf(stderr, "tandem %s: %v\n", name, err)
			return exitFail
		}
	}
	names := make([]string, 0, len(commands()))
	for _, c := range commands() {
		names = append(names, c.name)
	}
	fmt.Fprintf(stderr, "tandem: unknown command %q; the commands are %s\n\n", name, strings.Join(names, ", "))
	usage(stderr)
	return exitConfig
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: tandem [command] [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nWith no command, tandem runs serve: 'tandem --threads 16' is 'tandem serve --threads 16'.")
	fmt.Fprintln(w, "The commands that talk to a running tandem find it from server.addr and admin.addr (config file,")
	fmt.Fprintln(w, "TANDEM_* environment) unless --server or --admin says where; they print a table, or JSON with --json.")
	fmt.Fprintln(w, "Run 'tandem help COMMAND' or 'tandem COMMAND --help' for a command's flags.")
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func isUsageError(err error) bool {
	var ue usageError
	var ce *ConfigError
	return errors.As(err, &ue) || errors.As(err, &ce)
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, synopsis string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("tandem "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tandem %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning a parse error into a usage error.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}
