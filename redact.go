package main

import (
	"net/url"
)

// redactURL is a Postgres URL fit for a log line or the output of `tandem config`: its password,
// in the user part or a password= parameter, is replaced by xxxxx. A value that does not parse is
// not shown at all, since where its password sits cannot be told.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not shown: not a URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
