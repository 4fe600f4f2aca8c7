// Command embed runs tandem's job queue inside a Go program: a bbolt file, a worker pool, a
// runtime with the program's own job kind, then a job enqueued and waited for.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store"
)

func main() {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Path: "data/tandem.db"}) // the bbolt file
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	workers, err := pool.New(pool.Options{Name: "jobs", Size: 4, Backlog: pool.MaxBacklog}) // concurrency
	if err != nil {
		log.Fatal(err)
	}
	defer workers.Release(ctx)
	rt, err := jobs.New(jobs.Options{Store: st, Pool: workers})
	if err != nil {
		log.Fatal(err)
	}
	err = rt.RegisterFunc("email", func(ctx context.Context, j *jobs.Job) (any, error) {
		var p struct {
			To string `json:"to"`
		}
		if err := json.Unmarshal(j.Payload, &p); err != nil {
			return nil, jobs.Permanent(err) // a payload that cannot work is not retried
		}
		return map[string]string{"sent_to": p.To}, nil // stored as the job's result
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := rt.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer rt.Stop(ctx) // running jobs finish, unstarted ones go back to ready for the next start

	// When Enqueue returns, the job is on disk: a crash from here on does not lose it.
	j, _, err := rt.Enqueue(ctx, jobs.EnqueueParams{Kind: "email", Payload: json.RawMessage(`{"to":"a@b.c"}`)})
	if err != nil {
		log.Fatal(err)
	}
	// Wait for it here only because this program ends next; a server goes on serving.
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for !j.State.Finished() {
		select {
		case <-waitCtx.Done():
			log.Fatalf("job %s still %s: %v", j.ID, j.State, waitCtx.Err())
		case <-time.After(10 * time.Millisecond):
		}
		if j, err = rt.Get(ctx, j.ID); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(j.Kind, j.State, string(j.Result))
}
