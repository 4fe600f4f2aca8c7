package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"
)

// bodyInitialCap is the first buffer readWhole allocates, whatever Content-Length claims: a
// client that announces 8 MiB and sends a byte every few seconds must not make the server hold
// 8 MiB for it (1,000 such connections would be 8 GiB). 32 KiB holds every job body under the
// default jobs.max_payload_bytes without growing twice.
const bodyInitialCap = 32 << 10

// bufferBody reads a request's whole body, bounded by MaxBodyBytes (413) and BodyTimeout (408),
// before the request asks for a thread, and hands the handler the bytes. A request waits on its
// client here, on the connection's goroutine, not while it holds a slot of the threads pool: six
// connections dribbling their bodies used to block every enqueue at the default 5 threads
// (issue 13). Requests without a body (GETs) pass at the cost of one comparison.
//
// The body's deadline is set on the connection (http.ResponseController), counted from the end of
// the headers, and cleared once the body is in: net/http keeps reading the connection in the
// background while the handler runs, and a deadline left behind would cancel the request's context
// when it fired. A body cut short by the deadline gets 408 and the connection is closed: the rest
// of the body is still on the wire, so the connection cannot carry another request.
func (s *Server) bufferBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > s.opts.MaxBodyBytes {
			bodyTooLarge(w, s.opts.MaxBodyBytes)
			return
		}
		body, err := s.readWhole(w, r)
		var mbe *http.MaxBytesError
		switch {
		case err == nil:
		case errors.As(err, &mbe):
			// MaxBytesReader already told net/http to close the connection after this answer.
			bodyTooLarge(w, mbe.Limit)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			s.internalError(w, r, http.StatusRequestTimeout, slog.LevelInfo, fmt.Sprintf("the request body did not arrive within %s", s.opts.BodyTimeout),
				fmt.Errorf("body not received within server.body_timeout %s: %w", s.opts.BodyTimeout, err))
			return
		default:
			w.Header().Set("Connection", "close")
			s.internalError(w, r, http.StatusBadRequest, slog.LevelInfo, "the request body could not be read", err)
			return
		}
		r.Body = &bufferedBody{Reader: bytes.NewReader(body), b: body}
		next.ServeHTTP(w, r)
	})
}

// bufferedBody is a body bufferBody already read: handlers may read it as any body, and the job
// API's readBody takes the bytes as they are instead of copying them again.
type bufferedBody struct {
	*bytes.Reader
	b []byte
}

// Close implements io.Closer; there is nothing to release.
func (*bufferedBody) Close() error { return nil }

// readWhole reads r's body within BodyTimeout. Where the connection's deadline cannot be set (a
// wrapper of the ResponseWriter without Unwrap), only ReadTimeout bounds the read.
//
// The deadline is cleared only when the body is in. After a failure it stays: net/http reads what
// is left of a body (up to 256 KiB) before it closes the connection, and a deadline already past
// ends that read at once, where none would wait on the slow client for as long as it likes.
func (s *Server) readWhole(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	armed := rc.SetReadDeadline(time.Now().Add(s.opts.BodyTimeout)) == nil
	initial := int64(bodyInitialCap)
	if r.ContentLength >= 0 {
		initial = min(r.ContentLength+1, initial) // +1: room to see EOF without growing
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes), int(initial))
	if err == nil && armed {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return body, err
}

// readAll is io.ReadAll with a first buffer of the given size.
func readAll(rd io.Reader, initial int) ([]byte, error) {
	b := make([]byte, 0, max(initial, 512))
	for {
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				return b, nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // let append pick the next size
		}
	}
}
