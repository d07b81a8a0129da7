package main

// Mode "first": the latency of a message to an instance that has been idle.
// One client connects; then -msgs messages are posted one at a time, each
// after -gap of quiet (±25 %), so every one of them meets the idle state the
// on-demand worker loops and the waker leave behind (jobs/loops.go). Each
// post opens a new HTTP connection, as a website's backend posting now and
// then would. The tool prints post→receive and the post's round trip.

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/pushdesk/pushdesk/app/auth"
)

var firstGap time.Duration

func init() {
	flag.DurationVar(&firstGap, "gap", 5*time.Second, "quiet time before each message (first mode)")
}

func runFirst(cfg config) error {
	tokens := auth.NewTokens(cfg.secret)
	c, err := dial(cfg, tokens, cfg.uidBase, 0)
	if err != nil {
		return err
	}
	st := &stats{}
	go read(c, st)
	var posts []time.Duration
	for i := range cfg.msgs {
		time.Sleep(firstGap*3/4 + rand.N(firstGap/2+1))
		hc := httpClient(1) // a fresh connection per post
		want := st.received.Load() + 1
		t0 := time.Now()
		body := fmt.Appendf(nil, `{"to_uid":%d,"kind":"bench","body":{"sent":%d}}`, c.uid, t0.UnixNano())
		code, resp, err := postJSON(hc, cfg.ingest+"/internal/v1/messages", cfg.key, body)
		posts = append(posts, time.Since(t0))
		hc.CloseIdleConnections()
		if err != nil || code != 202 {
			return fmt.Errorf("post %d: %d %s %v", i, code, resp, err)
		}
		deadline := time.Now().Add(cfg.timeout)
		for st.received.Load() < want && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
		if st.received.Load() < want {
			return fmt.Errorf("message %d not delivered within %v", i, cfg.timeout)
		}
		fmt.Fprintf(os.Stderr, ".")
	}
	fmt.Fprintln(os.Stderr)
	c.conn.Close()
	<-c.done
	lat := c.latencies
	fmt.Printf("%d messages, each after ~%v idle\n", len(lat), firstGap)
	fmt.Printf("post→receive: p50 %v  p90 %v  p99 %v  max %v\n", pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))
	fmt.Printf("post round trip: p50 %v  p99 %v\n", pct(posts, 50), pct(posts, 99))
	return nil
}
