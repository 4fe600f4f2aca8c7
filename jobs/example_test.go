package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store"
)

// A Go program embeds the queue: a store file, a worker pool, a runtime with its own job kind,
// then Enqueue from the same process. cmd_serve.go composes the binary the same way.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tandem-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	st, err := store.Open(ctx, store.Options{Path: filepath.Join(dir, "tandem.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	// The concurrency knob: 2 jobs at once. Jobs leased ahead (Options.Prefetch) wait in the
	// pool's backlog for a worker.
	workers, err := pool.New(pool.Options{Name: "jobs", Size: 2, Backlog: pool.MaxBacklog})
	if err != nil {
		log.Fatal(err)
	}
	defer workers.Release(ctx)

	rt, err := jobs.New(jobs.Options{Store: st, Pool: workers})
	if err != nil {
		log.Fatal(err)
	}
	greeted := make(chan string, 1)
	err = rt.RegisterFunc("greet", func(ctx context.Context, j *jobs.Job) (any, error) {
		var p struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(j.Payload, &p); err != nil {
			return nil, jobs.Permanent(err) // a payload that cannot work is not retried
		}
		greeted <- "hello, " + p.Name
		return map[string]string{"greeting": "hello, " + p.Name}, nil // stored as the job's result
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := rt.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer rt.Stop(ctx)

	// When Enqueue returns, the job is on disk: a crash from here on does not lose it.
	j, _, err := rt.Enqueue(ctx, jobs.EnqueueParams{Kind: "greet", Payload: json.RawMessage(`{"name":"tandem"}`)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-greeted)
	for j.State != jobs.StateSucceeded {
		time.Sleep(10 * time.Millisecond)
		if j, err = rt.Get(ctx, j.ID); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(j.State, string(j.Result))
	// Output:
	// hello, tandem
	// succeeded {"greeting":"hello, tandem"}
}

// A kind that checks its payload at enqueue: a bad payload is refused with the field named (an
// HTTP client gets 400 and {"fields": {"payload.size": ...}}) instead of becoming a dead job.
func ExampleDecodePayload() {
	type resize struct {
		Path string `json:"path"`
		Size int    `json:"size"`
	}
	validate := func(payload json.RawMessage) error {
		var p resize
		if err := jobs.DecodePayload(payload, &p); err != nil {
			return err
		}
		if p.Size < 1 {
			return &jobs.ValidationError{Fields: map[string]string{"payload.size": "must be at least 1"}}
		}
		return nil
	}
	_ = jobs.Kind{Validate: validate} // with a Handler, passed to Runtime.Register

	for _, payload := range []string{`{"path":"a.png","size":64}`, `{"path":"a.png","size":"big"}`, `{"path":"a.png","width":64}`, `{"size":0}`} {
		fmt.Println(validate(json.RawMessage(payload)))
	}
	// Output:
	// <nil>
	// invalid job: payload.size: must be an integer, got string
	// invalid job: payload.width: unknown field
	// invalid job: payload.size: must be at least 1
}
