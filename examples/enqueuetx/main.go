// Command enqueuetx enqueues a job inside the program's own Postgres transaction (tandem's
// Postgres backend): a user row and its welcome job commit together, or neither exists. Run it
// with the database in TANDEM_STORE_URL, e.g. postgres://postgres@127.0.0.1:5432/app.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/jobs"
	"github.com/tandem-run/tandem/pool"
	"github.com/tandem-run/tandem/store/postgres"
)

func main() {
	ctx := context.Background()
	url := os.Getenv("TANDEM_STORE_URL")
	st, err := postgres.Open(ctx, postgres.Options{URL: url}) // applies tandem's migrations
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	workers, err := pool.New(pool.Options{Name: "jobs", Size: 2, Backlog: pool.MaxBacklog})
	if err != nil {
		log.Fatal(err)
	}
	defer workers.Release(ctx)
	rt, err := jobs.New(jobs.Options{Store: st, Pool: workers})
	if err != nil {
		log.Fatal(err)
	}
	welcomed := make(chan string, 1)
	err = rt.RegisterFunc("welcome", func(ctx context.Context, j *jobs.Job) (any, error) {
		var p struct {
			Email string `json:"email"`
		}
		if err := json.Unmarshal(j.Payload, &p); err != nil {
			return nil, jobs.Permanent(err)
		}
		welcomed <- p.Email
		return nil, nil
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := rt.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer rt.Stop(ctx)

	// The program's own connection and table, beside tandem's.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS users (email text PRIMARY KEY)`); err != nil {
		log.Fatal(err)
	}
	signUp := func(email string, commit bool) string {
		tx, err := conn.Begin(ctx)
		if err != nil {
			log.Fatal(err)
		}
		defer tx.Rollback(ctx) // a no-op after Commit
		if _, err := tx.Exec(ctx, `INSERT INTO users (email) VALUES ($1)`, email); err != nil {
			log.Fatal(err)
		}
		payload, _ := json.Marshal(map[string]string{"email": email})
		js, _, err := rt.EnqueueTx(ctx, tx, jobs.EnqueueParams{Kind: "welcome", Payload: payload})
		if err != nil {
			log.Fatal(err)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				log.Fatal(err)
			}
		}
		return js[0].ID
	}
	kept := signUp("kept@example.com", true)
	gone := signUp("gone@example.com", false) // rolled back: no user, and no job

	select {
	case email := <-welcomed:
		fmt.Println("welcomed", email)
	case <-time.After(10 * time.Second):
		log.Fatal("the committed job never ran")
	}
	j, err := rt.Get(ctx, kept)
	for err == nil && !j.State.Finished() {
		time.Sleep(10 * time.Millisecond)
		j, err = rt.Get(ctx, kept)
	}
	if err != nil {
		log.Fatal(err)
	}
	_, err = rt.Get(ctx, gone)
	fmt.Println("committed job:", j.State, "| rolled-back job exists:", err == nil)
}
