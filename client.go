package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

// client talks to a running tandem: the main listener for /v1 and the admin listener for /admin.
// Its addresses and token come from the same layers as serve's (see resolve), so a client beside
// a tandem configured by file or environment finds it without being told.
type client struct {
	base  string // the main listener's URL
	admin string // the admin listener's URL
	token string // admin.token
	json  bool   // --json: print the server's JSON answer
	http  *http.Client

	config string   // --config
	env    []string // the environment its defaults come from (see resolve)
}

// addClientFlags registers the flags every client command shares. They may also come before the
// command ('tandem --server URL jobs list'; see commandOf). env is the environment resolve reads.
func addClientFlags(fs *pflag.FlagSet, env []string) *client {
	c := &client{http: &http.Client{Timeout: 30 * time.Second}, env: env}
	fs.StringVar(&c.base, "server", "", "tandem's main listener URL (default: env TANDEM_SERVER_URL, else http:// and server.addr)")
	fs.StringVar(&c.admin, "admin", "", "tandem's admin listener URL (default: env TANDEM_ADMIN_URL, else http:// and admin.addr)")
	fs.StringVar(&c.config, "config", "", "configuration file to read server.addr, admin.addr and admin.token from (default ./config.yaml when present)")
	fs.BoolVar(&c.json, "json", false, "print the server's JSON answer instead of a table")
	return c
}

// resolve fills what the flags left unset from serve's layers: defaults < config file <
// TANDEM_* environment; TANDEM_SERVER_URL and TANDEM_ADMIN_URL, when set, name the URLs outright.
func (c *client) resolve() error {
	l, err := loadConfig(LoadOptions{ConfigPath: c.config, Environ: c.env})
	if err != nil {
		return err
	}
	c.base = cmp.Or(c.base, getenv(c.env, "TANDEM_SERVER_URL"), "http://"+dialAddr(l.Config.Server.Addr))
	c.admin = cmp.Or(c.admin, getenv(c.env, "TANDEM_ADMIN_URL"), "http://"+dialAddr(l.Config.Admin.Addr))
	c.token = l.Config.Admin.Token
	return nil
}

// parseClient parses a client command's flags and resolves its addresses.
func parseClient(fs *pflag.FlagSet, c *client, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return c.resolve()
}

// dialAddr turns a listen address into one to dial on this host: no host or an unspecified one
// (":3000", "0.0.0.0:3000") is 127.0.0.1, "[::]:3000" is [::1]:3000; any other is kept.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen // config validation already refused it for serve; the dial will say why
	}
	if host == "" {
		host = "127.0.0.1"
	} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// apiError is a non-2xx answer, carrying the server's {"error": ...} message.
type apiError struct {
	status int
	msg    string
	fields map[string]string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.msg)
	for k, v := range e.fields {
		s += fmt.Sprintf("\n  %s: %s", k, v)
	}
	return s
}

// send sends req, asking "is tandem running" when nothing listens there.
func send(hc *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := hc.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w: is tandem running at %s://%s?", err, req.URL.Scheme, req.URL.Host)
	}
	return resp, err // a *url.Error: it names the method and the URL
}

// do sends a request and decodes a JSON answer into out (when non-nil). It returns the raw body.
func (c *client) do(ctx context.Context, method, base, path string, body any, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return nil, usageError{fmt.Errorf("bad URL: %w", err)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" && base == c.admin {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := send(c.http, req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, req.URL, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error  string            `json:"error"`
			Fields map[string]string `json:"fields"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return raw, &apiError{status: resp.StatusCode, msg: e.Error, fields: e.Fields}
	}
	if out != nil {
		if err := decodeNumbers(raw, out); err != nil {
			return raw, fmt.Errorf("%s %s: decode answer: %w", method, req.URL, err)
		}
	}
	return raw, nil
}

// decodeNumbers decodes JSON keeping numbers as written (no 1e+06 for a count).
func decodeNumbers(raw []byte, out any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(out)
}

// show prints an answer: as indented JSON with --json, else through table.
func (c *client) show(stdout io.Writer, raw []byte, table func(io.Writer) error) error {
	if !c.json {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		if err := table(tw); err != nil {
			return err
		}
		return tw.Flush()
	}
	var buf bytes.Buffer
	if json.Indent(&buf, raw, "", "  ") != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, err := stdout.Write(buf.Bytes())
	return err
}

// call sends a request and prints its answer: the server's JSON with --json, else the table.
func (c *client) call(ctx context.Context, stdout io.Writer, method, base, path string, body any, out any, table func(io.Writer) error) error {
	raw, err := c.do(ctx, method, base, path, body, out)
	if err != nil {
		return err
	}
	return c.show(stdout, raw, table)
}

// cell formats one decoded JSON value for a table: nothing as "-", objects and lists as JSON.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return x
	case json.Number, bool:
		return fmt.Sprint(x)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// rows prints a header of cols (upper case) and one line per object.
func rows(w io.Writer, cols []string, objs ...map[string]any) error {
	fmt.Fprintln(w, strings.ToUpper(strings.Join(cols, "\t")))
	for _, o := range objs {
		vals := make([]string, len(cols))
		for i, col := range cols {
			vals[i] = cell(o[col])
		}
		if _, err := fmt.Fprintln(w, strings.Join(vals, "\t")); err != nil {
			return err
		}
	}
	return nil
}

// fields prints one object as lines of key and value: first the keys of order, then the rest.
func fields(w io.Writer, obj map[string]any, order ...string) error {
	rest := make([]string, 0, len(obj))
	for k := range obj {
		if !slices.Contains(order, k) {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range append(order, rest...) {
		if v, ok := obj[k]; ok {
			if _, err := fmt.Fprintf(w, "%s\t%s\n", k, cell(v)); err != nil {
				return err
			}
		}
	}
	return nil
}
