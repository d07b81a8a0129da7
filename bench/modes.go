package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The direct and broadcast modes: posting and timing what the clients get.

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
