// Command bench load-tests a running Pushdesk the way docs/performance.md describes:
// N WebSocket clients (one user each, dialled 64 at a time from several
// 127.0.1.x source addresses, 1 KiB read buffers, every frame parsed), then
// M messages posted by P keep-alive publishers, each to one random
// connected user. It prints publish/s, delivered/s, publish→receive
// latency percentiles and the server's RSS per connection.
//
//	go tool task bench -- -conns 2000 -msgs 20000 -pid $(pgrep -n pushdesk)
//	go tool task bench -- -urls http://127.0.0.1:8081,http://127.0.0.1:8082 ...
//
// Build it with GOEXPERIMENT=jsonv2 (the task does): parsing every frame
// with the v1 decoder costs the tool ~30% more CPU, which on one machine
// is CPU the server does not get.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app/auth"
)

type config struct {
	urls       []string // public URLs; clients are spread over them round-robin
	ingest     string   // where messages are posted
	secret     string
	key        string
	conns      int
	msgs       int
	publishers int
	dialConc   int
	uidBase    uint64
	pids       []int
	storePids  []int
	mode       string
	broadcasts int
	quiet      time.Duration
	rate       int
	postAt     int64
	timeout    time.Duration
}

func main() {
	// Thousands of clients make a large heap of goroutine stacks; a GC
	// cycle over it would stall every reader at once and show up as the
	// server's latency. Collect rarely.
	debug.SetGCPercent(400)
	var cfg config
	var urls, pids, storePids string
	flag.StringVar(&urls, "urls", "http://127.0.0.1:8080", "comma-separated public base URLs (clients spread over them)")
	flag.StringVar(&cfg.ingest, "ingest", "", "internal base URL for posts (default: the first of -urls)")
	flag.StringVar(&cfg.secret, "secret", envOr("PUSHDESK_JWT_SECRET", "dev-jwt-secret"), "JWT secret")
	flag.StringVar(&cfg.key, "key", envOr("PUSHDESK_INGEST_KEY", "dev-ingest-key"), "ingest key")
	flag.IntVar(&cfg.conns, "conns", 2000, "WebSocket clients")
	flag.IntVar(&cfg.msgs, "msgs", 20000, "messages to post (direct mode)")
	flag.IntVar(&cfg.publishers, "publishers", 32, "concurrent publishers")
	flag.IntVar(&cfg.dialConc, "dial", 64, "concurrent dials")
	flag.Uint64Var(&cfg.uidBase, "uid-base", 0, "first user id (default: random, so runs do not share users)")
	flag.StringVar(&pids, "pid", "", "comma-separated server pids, for RSS per connection")
	flag.StringVar(&storePids, "store-pids", "", "comma-separated pids of the stores (Redis, MariaDB), for their CPU use")
	flag.StringVar(&cfg.mode, "mode", "direct", "direct (messages to random users), broadcast, observe (count broadcasts another bench process posts), chat (see chat.go), storm (see storm.go) or first (see first.go)")
	flag.IntVar(&cfg.broadcasts, "broadcasts", 5, "broadcasts to send, 0.5 s apart (broadcast mode)")
	flag.Int64Var(&cfg.postAt, "post-at", 0, "unix time to start posting at (to line up several bench processes)")
	flag.IntVar(&cfg.rate, "rate", 0, "cap on messages posted per second (0: as fast as the publishers go)")
	flag.DurationVar(&cfg.quiet, "quiet", 3*time.Second, "quiet time before the RSS reading")
	flag.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "how long to wait for deliveries")
	flag.Parse()
	if !strings.Contains(buildSetting("GOEXPERIMENT"), "jsonv2") {
		fmt.Fprintln(os.Stderr, "bench: built without GOEXPERIMENT=jsonv2: parsing frames will take CPU from the server (use go tool task bench)")
	}
	cfg.urls = strings.Split(urls, ",")
	if cfg.ingest == "" {
		cfg.ingest = cfg.urls[0]
	}
	cfg.pids = parsePids(pids)
	cfg.storePids = parsePids(storePids)
	if cfg.uidBase == 0 {
		cfg.uidBase = uint64(rand.IntN(1_000_000))*1_000_000 + 1
	}
	runMode := run
	switch cfg.mode {
	case "chat":
		runMode = runChat
	case "storm":
		runMode = runStorm
	case "first":
		runMode = runFirst
	}
	if err := runMode(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// buildSetting is one of the build's settings (runtime/debug.BuildInfo).
func buildSetting(key string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == key {
				return s.Value
			}
		}
	}
	return ""
}

func parsePids(s string) []int {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// client is one bench WebSocket user.
type client struct {
	uid       uint64
	conn      *websocket.Conn
	latencies []time.Duration // written by the client's reader only
	done      chan struct{}
}

// stats are shared by every client goroutine without a lock, so the tool
// measures the server rather than its own contention.
type stats struct {
	received atomic.Int64
	lastRecv atomic.Int64 // unix ns
	bcasts   [64]bcastStat
	errors   atomic.Int64
}

// frame is what a bench client parses out of every frame.
type frame struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Broadcast bool   `json:"broadcast"`
	Replay    bool   `json:"replay"`
	Body      struct {
		Sent int64 `json:"sent"`
		Tag  int   `json:"tag"` // broadcast number + 1
	} `json:"body"`
}

func rssKB(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				f := strings.Fields(line)
				n, _ := strconv.ParseInt(f[1], 10, 64)
				total += n
			}
		}
	}
	return total
}

// cpuTicks returns the user+system CPU time the processes have used, in
// clock ticks (1/100 s on Linux).
func cpuTicks(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): utime
		// and stime are the 12th and 13th.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				s, _ := strconv.ParseInt(f[12], 10, 64)
				total += u + s
			}
		}
	}
	return total
}

func run(cfg config) error {
	tokens := auth.NewTokens(cfg.secret)
	st := &stats{}
	rssBefore := rssKB(cfg.pids)

	clients := make([]*client, cfg.conns)
	var dialErrs atomic.Int64
	start := time.Now()
	sem := make(chan struct{}, cfg.dialConc)
	var wg sync.WaitGroup
	for i := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			uid := cfg.uidBase + uint64(i)
			c, err := dial(cfg, tokens, uid, i)
			if err != nil {
				if dialErrs.Add(1) <= 3 {
					fmt.Fprintln(os.Stderr, "dial:", err)
				}
				return
			}
			clients[i] = c
			go read(c, st) // at once: a client that does not read cannot answer pings
		}(i)
	}
	wg.Wait()
	var live []*client
	for _, c := range clients {
		if c != nil {
			live = append(live, c)
		}
	}
	fmt.Printf("connected %d/%d clients in %v (%d failed)\n", len(live), cfg.conns, time.Since(start).Round(time.Millisecond), dialErrs.Load())
	if len(live) == 0 {
		return fmt.Errorf("no client connected")
	}
	time.Sleep(cfg.quiet)
	rssAfter := rssKB(cfg.pids)
	if len(cfg.pids) > 0 {
		fmt.Printf("server RSS: %.1f MiB before, %.1f MiB with %d clients → %.1f KiB per connection\n",
			float64(rssBefore)/1024, float64(rssAfter)/1024, len(live), float64(rssAfter-rssBefore)/float64(len(live)))
	}
	quietGC()
	if cfg.postAt > 0 {
		time.Sleep(time.Until(time.Unix(cfg.postAt, 0)))
	}
	switch cfg.mode {
	case "direct":
		return direct(cfg, live, st)
	case "observe":
		// Another bench process posts the broadcasts: wait for each and
		// report post → last client here, from the time in its body.
		for i := range min(cfg.broadcasts, len(st.bcasts)) {
			b := &st.bcasts[i]
			if err := b.waitAll(i, len(live), cfg.timeout); err != nil {
				return err
			}
			fmt.Printf("broadcast %d: all %d clients here in %v\n", i, len(live), time.Duration(b.last.Load()-b.sent.Load()).Round(time.Millisecond))
		}
		closeAll(live)
		return nil
	case "broadcast":
		err := broadcast(cfg, live, st)
		if len(cfg.pids) > 0 {
			fmt.Printf("server RSS after broadcasts: %.1f MiB\n", float64(rssKB(cfg.pids))/1024)
		}
		closeAll(live)
		return err
	}
	return fmt.Errorf("unknown mode %q", cfg.mode)
}

// quietGC collects once and then only if the heap grows by another GiB.
// From here on the tool allocates a few MiB per broadcast at most, yet each
// GC cycle shrinks the stack of every parked reader, and each reader grows
// it again (a page-faulting copy) on its next frame: with 15,000 readers
// that regrowth cost the tool a third of its CPU during a fan-out, CPU the
// server it measures shares on one machine.
func quietGC() {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	debug.SetMemoryLimit(int64(ms.HeapInuse) + 1<<30)
	debug.SetGCPercent(-1)
}

func closeAll(cs []*client) {
	for _, c := range cs {
		c.conn.Close()
	}
}

func dial(cfg config, tokens *auth.Tokens, uid uint64, i int) (*client, error) {
	tok, err := tokens.Mint(auth.Identity{UID: uid}, 2*time.Hour)
	if err != nil {
		return nil, err
	}
	conn, err := dialWS(cfg, tok, i)
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read hello: %w", err)
	}
	var f frame
	if json.Unmarshal(data, &f) != nil || f.Type != "hello" {
		conn.Close()
		return nil, fmt.Errorf("first frame is not hello: %s", data)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return &client{uid: uid, conn: conn, done: make(chan struct{})}, nil
}

// dialWS opens client i's WebSocket with token tok, from the i-th local
// source address.
func dialWS(cfg config, tok string, i int) (*websocket.Conn, error) {
	base := cfg.urls[i%len(cfg.urls)]
	u := "ws" + strings.TrimPrefix(base, "http") + "/ws?token=" + tok
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%200))}
	d := websocket.Dialer{
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		HandshakeTimeout: 30 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&net.Dialer{LocalAddr: local, Timeout: 30 * time.Second}).DialContext(ctx, network, addr)
		},
	}
	conn, _, err := d.Dial(u, nil)
	return conn, err
}

func read(c *client, st *stats) {
	defer close(c.done)
	var buf bytes.Buffer // reused: the tool should not measure its own garbage
	for {
		_, r, err := c.conn.NextReader()
		if err != nil {
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		data := buf.Bytes()
		now := time.Now().UnixNano()
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			st.errors.Add(1)
			continue
		}
		if f.Type != "msg" || f.Body.Sent == 0 || f.Replay { // replays are earlier runs' messages
			continue
		}
		st.received.Add(1)
		st.lastRecv.Store(now)
		if f.Body.Tag > 0 && f.Body.Tag <= len(st.bcasts) {
			st.bcasts[f.Body.Tag-1].sent.Store(f.Body.Sent)
			st.bcasts[f.Body.Tag-1].seen(now)
		} else {
			c.latencies = append(c.latencies, time.Duration(now-f.Body.Sent))
		}
	}
}
