// Package e2e holds the tests that run the tandem binary as a process: the commands, signals and
// exit statuses, crashes (SIGKILL) and a full disk, cgroups, the release build, metrics, the
// autoscalers under real load and the dashboard in a headless Chromium. TestMain builds the binary
// once for the whole run (with the race detector under -race) and every test starts it through
// internal/tandemtest. The package has no code of its own; in-process tests stay beside their code.
package e2e
