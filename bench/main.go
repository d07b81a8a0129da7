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
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/valyala/fasthttp"
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
	flag.StringVar(&cfg.mode, "mode", "direct", "direct (messages to random users), broadcast, observe (count broadcasts another bench process posts), chat (see chat.go) or storm (see storm.go)")
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

type bcastStat struct {
	got  atomic.Int64
	last atomic.Int64 // unix ns of the latest receipt
	sent atomic.Int64 // unix ns the poster put in the body
}

// waitAll waits until n clients have broadcast i, or timeout passes.
func (b *bcastStat) waitAll(i, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for b.got.Load() < int64(n) {
		if time.Now().After(deadline) {
			return fmt.Errorf("broadcast %d reached %d/%d clients", i, b.got.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func (b *bcastStat) seen(now int64) {
	b.got.Add(1)
	for {
		old := b.last.Load()
		if now <= old || b.last.CompareAndSwap(old, now) {
			return
		}
	}
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

// httpClient is a keep-alive client for n concurrent publishers. It is
// fasthttp's, the lightest there is, so the tool leaves the CPU it shares
// with the server to the server.
func httpClient(n int) *fasthttp.Client {
	return &fasthttp.Client{
		MaxConnsPerHost: n, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		Dial: func(addr string) (net.Conn, error) {
			c, err := fasthttp.Dial(addr)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
	}
}

func postJSON(hc *fasthttp.Client, url, key string, body []byte) (int, []byte, error) {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := hc.Do(req, res); err != nil {
		return 0, nil, err
	}
	return res.StatusCode(), append([]byte(nil), res.Body()...), nil
}

func direct(cfg config, live []*client, st *stats) error {
	hc := httpClient(cfg.publishers)
	var next atomic.Int64
	var postErrs atomic.Int64
	var pubLat []time.Duration
	var pubMu sync.Mutex
	start := time.Now()
	self := []int{os.Getpid()}
	cpu0, tool0, store0 := cpuTicks(cfg.pids), cpuTicks(self), cpuTicks(cfg.storePids)
	var wg sync.WaitGroup
	for range cfg.publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for {
				n := next.Add(1)
				if n > int64(cfg.msgs) {
					break
				}
				if cfg.rate > 0 { // message n is due at start + n/rate
					time.Sleep(time.Until(start.Add(time.Duration(n) * time.Second / time.Duration(cfg.rate))))
				}
				c := live[rand.IntN(len(live))]
				t0 := time.Now()
				body := fmt.Appendf(nil, `{"to_uid":%d,"kind":"bench","body":{"sent":%d}}`, c.uid, t0.UnixNano())
				code, resp, err := postJSON(hc, cfg.ingest+"/internal/v1/messages", cfg.key, body)
				mine = append(mine, time.Since(t0))
				if err != nil || code != 202 {
					if postErrs.Add(1) <= 3 {
						fmt.Fprintf(os.Stderr, "post: %d %s %v\n", code, resp, err)
					}
				}
			}
			pubMu.Lock()
			pubLat = append(pubLat, mine...)
			pubMu.Unlock()
		}()
	}
	wg.Wait()
	pubDur := time.Since(start)
	want := int64(cfg.msgs) - postErrs.Load()
	deadline := time.Now().Add(cfg.timeout)
	for st.received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := st.received.Load()
	span := time.Duration(st.lastRecv.Load() - start.UnixNano())
	cpu, tool, store := cpuTicks(cfg.pids)-cpu0, cpuTicks(self)-tool0, cpuTicks(cfg.storePids)-store0
	closeAll(live) // readers stop; their latency lists are then safe to read
	var lat []time.Duration
	for _, c := range live {
		<-c.done
		lat = append(lat, c.latencies...)
	}
	fmt.Printf("posted %d messages in %v (%d failed): %.0f publish/s; ingest p50 %v p99 %v\n",
		cfg.msgs, pubDur.Round(time.Millisecond), postErrs.Load(), float64(cfg.msgs)/pubDur.Seconds(), pct(pubLat, 50), pct(pubLat, 99))
	fmt.Printf("delivered %d/%d in %v: %.0f delivered/s\n", got, want, span.Round(time.Millisecond), float64(got)/span.Seconds())
	fmt.Printf("publish→receive latency: p50 %v  p90 %v  p99 %v  max %v\n", pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))
	if len(cfg.pids) > 0 && got > 0 {
		fmt.Printf("server CPU while posting: %.2f s, %.0f µs per message\n", float64(cpu)/100, float64(cpu)*1e4/float64(got))
	}
	if got > 0 {
		fmt.Printf("this tool's CPU while posting: %.2f s, %.0f µs per message\n", float64(tool)/100, float64(tool)*1e4/float64(got))
	}
	if len(cfg.storePids) > 0 && got > 0 {
		fmt.Printf("stores' CPU while posting: %.2f s, %.0f µs per message\n", float64(store)/100, float64(store)*1e4/float64(got))
	}
	if got < want {
		return fmt.Errorf("%d messages not delivered", want-got)
	}
	return nil
}

func broadcast(cfg config, live []*client, st *stats) error {
	hc := httpClient(4)
	var times []time.Duration
	self := []int{os.Getpid()}
	var cpu, tool, store int64 // ticks spent inside the fan-out windows
	for i := range min(cfg.broadcasts, len(st.bcasts)) {
		cpu0, tool0, store0 := cpuTicks(cfg.pids), cpuTicks(self), cpuTicks(cfg.storePids)
		t0 := time.Now()
		body := fmt.Appendf(nil, `{"segment":"all","kind":"bench","body":{"sent":%d,"tag":%d,"run":%d}}`, t0.UnixNano(), i+1, cfg.uidBase)
		code, resp, err := postJSON(hc, cfg.ingest+"/internal/v1/broadcasts", cfg.key, body)
		if err != nil || code != 202 {
			return fmt.Errorf("broadcast post: %d %s %v", code, resp, err)
		}
		b := &st.bcasts[i]
		if err := b.waitAll(i, len(live), cfg.timeout); err != nil {
			return err
		}
		cpu += cpuTicks(cfg.pids) - cpu0
		tool += cpuTicks(self) - tool0
		store += cpuTicks(cfg.storePids) - store0
		times = append(times, time.Duration(b.last.Load()-t0.UnixNano()))
		fmt.Printf("broadcast %d: all %d clients in %v\n", i, len(live), times[len(times)-1].Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("fan-out time: median %v (min %v, max %v) over %d broadcasts to %d clients\n",
		pct(times, 50), pct(times, 0), pct(times, 100), len(times), len(live))
	if n := len(times); n > 0 {
		// CPU per broadcast, averaged over the fan-out windows (clock
		// ticks of 10 ms, so only the average is meaningful): on a shared
		// machine the fan-out time is bounded by what all of them use.
		fmt.Printf("CPU per broadcast: server %d ms, this tool %d ms, stores %d ms\n",
			cpu*10/int64(n), tool*10/int64(n), store*10/int64(n))
	}
	return nil
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s) - 1) * p / 100
	return s[i].Round(10 * time.Microsecond)
}
