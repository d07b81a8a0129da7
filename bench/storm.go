// Storm mode (-mode storm): a reconnect storm as docs/performance.md measures it.
// -conns clients (one user each) dial -dial at a time; each counts from
// the start of its dial to its hello. The tool then holds every socket
// open for -hold and counts as ready only the clients that got hello and
// are still open (a socket closed after hello does not count). It prints
// ready/N, refusals (1013 and their reasons), the connect rate (ready ÷
// the time from the first dial to the last dial's end) and time-to-hello
// percentiles.
//
//	go tool task bench -- -mode storm -conns 15000 -dial 64
//	go tool task bench -- -mode storm -conns 15000 -dial 5000
//
// Users are new by default (a random -uid-base): every cache of theirs is
// cold. Give the same -uid-base twice for users who come back. With
// -retry a refused client waits the retry hint of its 1013 close (plus up
// to as much again, as pushdesk.js does) and dials once more; its time to
// hello then includes the wait.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app/auth"
)

type stormConfig struct {
	hold  time.Duration
	retry bool
}

var stormCfg stormConfig

func init() {
	flag.DurationVar(&stormCfg.hold, "hold", 2*time.Second, "how long every socket stays open after the last dial before the count (storm mode)")
	flag.BoolVar(&stormCfg.retry, "retry", false, "a client refused with 1013 waits its retry hint (plus jitter) and dials again, once (storm mode)")
}

// stormClient is one dialler; the fields are written by its own goroutines.
type stormClient struct {
	conn    *websocket.Conn
	toHello time.Duration // 0: no hello
	retried bool
	closed  atomic.Int32 // close code seen after hello (-1: closed without one)
	done    chan struct{}
}

type stormStats struct {
	mu       sync.Mutex
	refusals map[string]int // "1013 <reason>" or the dial error's kind
	samples  []string
}

func (s *stormStats) note(kind, sample string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusals == nil {
		s.refusals = map[string]int{}
	}
	s.refusals[kind]++
	if s.refusals[kind] <= 2 && len(s.samples) < 8 {
		s.samples = append(s.samples, kind+": "+sample)
	}
}

func runStorm(cfg config) error {
	tokens := auth.NewTokens(cfg.secret)
	// Tokens first, so the storm window holds dials only.
	toks := make([]string, cfg.conns)
	for i := range toks {
		t, err := tokens.Mint(auth.Identity{UID: cfg.uidBase + uint64(i)}, 2*time.Hour)
		if err != nil {
			return err
		}
		toks[i] = t
	}
	st := &stormStats{}
	clients := make([]*stormClient, cfg.conns)
	self := []int{os.Getpid()}
	cpu0, tool0, store0 := cpuTicks(cfg.pids), cpuTicks(self), cpuTicks(cfg.storePids)
	start := time.Now()
	var lastEnd atomic.Int64
	sem := make(chan struct{}, cfg.dialConc)
	var wg sync.WaitGroup
	for i := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			c := &stormClient{done: make(chan struct{})}
			clients[i] = c
			t0 := time.Now()
			err := c.dial(cfg, toks[i], i)
			if hint, ok := retryHint(err); ok && stormCfg.retry {
				st.note("1013 "+closeText(err)+" (retried)", err.Error())
				time.Sleep(hint + time.Duration(rand.Int64N(int64(hint)+1)))
				c.retried = true
				err = c.dial(cfg, toks[i], i)
			}
			end := time.Now()
			for {
				old := lastEnd.Load()
				if end.UnixNano() <= old || lastEnd.CompareAndSwap(old, end.UnixNano()) {
					break
				}
			}
			if err != nil {
				close(c.done)
				st.note(refusalKind(err), err.Error())
				return
			}
			c.toHello = end.Sub(t0)
			go c.read()
		}(i)
	}
	wg.Wait()
	dialTime := time.Duration(lastEnd.Load() - start.UnixNano())
	cpu, tool, store := cpuTicks(cfg.pids)-cpu0, cpuTicks(self)-tool0, cpuTicks(cfg.storePids)-store0
	time.Sleep(stormCfg.hold)

	var lat []time.Duration
	hellos, ready, retried := 0, 0, 0
	closedAfter := map[int32]int{}
	for _, c := range clients {
		if c.toHello == 0 {
			continue
		}
		hellos++
		if code := c.closed.Load(); code != 0 {
			closedAfter[code]++
			continue
		}
		ready++
		lat = append(lat, c.toHello)
		if c.retried {
			retried++
		}
	}
	fmt.Printf("storm: %d/%d clients ready (got hello and stayed open %v), %d at a time; %d got hello then were closed %v\n",
		ready, cfg.conns, stormCfg.hold, cfg.dialConc, hellos-ready, closedAfter)
	if stormCfg.retry {
		fmt.Printf("storm: %d of the ready ones needed a retry\n", retried)
	}
	fmt.Printf("storm: dial time %v → %.0f connects/s (ready ÷ dial time)\n", dialTime.Round(time.Millisecond), float64(ready)/dialTime.Seconds())
	fmt.Printf("storm: dial→hello p50 %v  p90 %v  p99 %v  max %v\n", pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))
	if len(cfg.pids) > 0 && ready > 0 {
		fmt.Printf("storm: server CPU %.2f s, %.0f µs per connect; this tool %.2f s; stores %.2f s\n",
			float64(cpu)/100, float64(cpu)*1e4/float64(ready), float64(tool)/100, float64(store)/100)
	}
	st.mu.Lock()
	kinds := make([]string, 0, len(st.refusals))
	for k := range st.refusals {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Printf("storm: refused %d× %s\n", st.refusals[k], k)
	}
	for _, s := range st.samples {
		fmt.Fprintln(os.Stderr, "sample:", s)
	}
	st.mu.Unlock()
	for _, c := range clients {
		if c.conn != nil {
			c.conn.Close()
		}
	}
	if ready < cfg.conns {
		return fmt.Errorf("%d of %d clients not ready", cfg.conns-ready, cfg.conns)
	}
	return nil
}

// dial connects and reads the first frame, which must be hello.
func (c *stormClient) dial(cfg config, tok string, i int) error {
	conn, err := dialWS(cfg, tok, i)
	if err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil {
		conn.Close()
		return err
	}
	var f frame
	if json.Unmarshal(data, &f) != nil || f.Type != "hello" {
		conn.Close()
		return fmt.Errorf("first frame is not hello: %.200s", data)
	}
	_ = conn.SetReadDeadline(time.Time{})
	c.conn = conn
	return nil
}

// read parses every frame until the socket ends, and keeps how it ended.
func (c *stormClient) read() {
	defer close(c.done)
	var buf bytes.Buffer
	for {
		_, r, err := c.conn.NextReader()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.closed.Store(int32(ce.Code))
			} else {
				c.closed.Store(-1)
			}
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			c.closed.Store(-1)
			return
		}
		var f frame
		_ = json.Unmarshal(buf.Bytes(), &f)
	}
}

// retryHint is the wait a 1013 close asks for ("retry_ms=<n>" in its
// reason; none: 1 s).
func retryHint(err error) (time.Duration, bool) {
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater {
		return 0, false
	}
	for _, f := range strings.Fields(ce.Text) {
		if v, ok := strings.CutPrefix(f, "retry_ms="); ok {
			if ms, err := strconv.Atoi(v); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond, true
			}
		}
	}
	return time.Second, true
}

func closeText(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return strconv.Quote(ce.Text)
	}
	return ""
}

// refusalKind names how a dial failed, for the tally.
func refusalKind(err error) string {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return strconv.Itoa(ce.Code) + " " + strconv.Quote(ce.Text)
	case errors.Is(err, websocket.ErrBadHandshake):
		return "bad handshake"
	case strings.Contains(err.Error(), "timeout"):
		return "timeout"
	case strings.Contains(err.Error(), "reset"), strings.Contains(err.Error(), "refused"):
		return "tcp refused/reset"
	}
	return "other"
}
