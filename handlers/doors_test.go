package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app"
)

// logBuffer collects a server's log lines. Safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLogged is startServer with the server's log (Info and up) kept.
func startLogged(t *testing.T, change func(*app.Config)) (*Server, *logBuffer) {
	t.Helper()
	cfg := srv.App.Cfg
	cfg.Addr, cfg.InternalAddr, cfg.RunWorkers, cfg.InstanceID = "127.0.0.1:0", "", false, ""
	cfg.AdminPassword, cfg.MetricsToken = "", ""
	change(&cfg)
	logs := &logBuffer{}
	s, err := newProcess(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, logs
}

// getWith sends GET url with set applied and returns the status and body.
func getWith(t *testing.T, url string, set func(*http.Request)) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if set != nil {
		set(req)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func basic(user, pass string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func bearerOf(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

// asynqmon deletes and runs tasks and shows their bodies: it is served
// only with a password of its own (it used to open with the ingest key),
// and the log says so when that is on the public listener.
func TestAsynqmonNeedsItsOwnPassword(t *testing.T) {
	for _, tc := range []struct {
		name     string
		change   func(*app.Config)
		user     func(*http.Request)
		want     int
		wantLog  string
		internal bool
	}{
		{"no admin password: not served, not even for the ingest key", func(*app.Config) {}, basic("admin", testIngestKey), 404, "asynqmon is off", false},
		{"the ingest key as the admin password: not served", func(c *app.Config) { c.AdminPassword = testIngestKey }, basic("admin", testIngestKey), 404, "must not be the ingest key", false},
		{"its own password on the public listener: served, with a warning", func(c *app.Config) { c.AdminPassword = "adm-pass-1" }, basic("admin", "adm-pass-1"), 200, "asynqmon is served on the public listener", false},
		{"a wrong password on the public listener", func(c *app.Config) { c.AdminPassword = "adm-pass-1" }, basic("admin", testIngestKey), 401, "asynqmon is served on the public listener", false},
		{"its own password on the internal listener: served, no warning", func(c *app.Config) { c.AdminPassword = "adm-pass-1"; c.InternalAddr = "127.0.0.1:0" }, basic("admin", "adm-pass-1"), 200, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, logs := startLogged(t, tc.change)
			base := "http://" + s.Addr()
			if tc.internal {
				base = "http://" + s.InternalAddr()
			}
			if code, body := getWith(t, base+"/admin/queues/api/queues", tc.user); code != tc.want {
				t.Fatalf("asynqmon = %d %.200s, want %d", code, body, tc.want)
			}
			out := logs.String()
			if tc.wantLog != "" && !strings.Contains(out, tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, out)
			}
			if tc.internal && strings.Contains(out, "public listener") {
				t.Errorf("log warns of the public listener with an internal one:\n%s", out)
			}
			if strings.Contains(out, "adm-pass-1") || strings.Contains(out, testIngestKey) {
				t.Errorf("log shows a password:\n%s", out)
			}
		})
	}
}

// Without an internal listener /metrics used to be public; now it asks
// for a bearer token there (the metrics token, else the ingest key), and
// stays open on the internal listener only.
func TestMetricsBehindATokenOnThePublicListener(t *testing.T) {
	const metricsOK = "pushdesk_connections"
	for _, tc := range []struct {
		name   string
		change func(*app.Config)
		auth   func(*http.Request)
		want   int
	}{
		{"no token", func(*app.Config) {}, nil, 401},
		{"a wrong token", func(*app.Config) {}, bearerOf("nope"), 401},
		{"the ingest key by default", func(*app.Config) {}, bearerOf(testIngestKey), 200},
		{"the metrics token", func(c *app.Config) { c.MetricsToken = "mtr-token-1" }, bearerOf("mtr-token-1"), 200},
		{"the ingest key once a metrics token is set", func(c *app.Config) { c.MetricsToken = "mtr-token-1" }, bearerOf(testIngestKey), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := startLogged(t, tc.change)
			code, body := getWith(t, "http://"+s.Addr()+"/metrics", tc.auth)
			if code != tc.want || (code == 200) != strings.Contains(body, metricsOK) {
				t.Fatalf("public /metrics = %d %.200s, want %d", code, body, tc.want)
			}
			if code == 401 && !strings.Contains(body, `"unauthorized"`) {
				t.Fatalf("401 body = %s, want the contract's error body", body)
			}
		})
	}
	t.Run("internal listener", func(t *testing.T) {
		s, _ := startLogged(t, func(c *app.Config) { c.InternalAddr = "127.0.0.1:0" })
		if code, body := getWith(t, "http://"+s.InternalAddr()+"/metrics", nil); code != 200 || !strings.Contains(body, metricsOK) {
			t.Fatalf("internal /metrics = %d, want 200 without a token", code)
		}
		if code, _ := getWith(t, "http://"+s.Addr()+"/metrics", bearerOf(testIngestKey)); code != 404 {
			t.Fatalf("public /metrics beside an internal listener = %d, want 404", code)
		}
	})
}

// dialOrigin opens /ws on s with the given headers and returns the
// handshake's status (101 when it opened, then hello was read).
func dialOrigin(t *testing.T, s *Server, h http.Header) (int, string) {
	t.Helper()
	conn, res, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws?token="+mint(t, newUID()), h)
	if err != nil {
		if res == nil {
			t.Fatalf("dial: %v", err)
		}
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	defer conn.Close()
	wc := &wsClient{tb: t, conn: conn}
	if f := wc.next(); f.str("type") != "hello" {
		t.Fatalf("first frame = %v, want hello", f)
	}
	return res.StatusCode, ""
}

// sseOrigin opens /sse on s with the given headers and returns the status.
func sseOrigin(t *testing.T, s *Server, h http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addr()+"/sse?token="+mint(t, newUID()), nil)
	for k, v := range h {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == 200 {
		return 200, ""
	}
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// WebSockets (and SSE) used to accept any Origin. Now a page may open them
// from the server's own origin or a listed one; clients without an Origin
// (not browsers) are as before.
func TestOriginsAllowedToOpenStreams(t *testing.T) {
	origin := func(o string, more ...string) http.Header {
		h := http.Header{"Origin": {o}}
		for i := 0; i+1 < len(more); i += 2 {
			h.Set(more[i], more[i+1])
		}
		return h
	}
	listed := func(c *app.Config) { c.AllowedOrigins = "https://site.example, https://Other.example/" }
	for _, tc := range []struct {
		name   string
		change func(*app.Config)
		header func(s *Server) http.Header
		want   int
	}{
		{"no Origin (not a browser)", func(*app.Config) {}, func(*Server) http.Header { return nil }, 101},
		{"the server's own origin", func(*app.Config) {}, func(s *Server) http.Header { return origin("http://" + s.Addr()) }, 101},
		{"the own origin over https behind a proxy", func(*app.Config) {}, func(s *Server) http.Header { return origin("https://" + s.Addr()) }, 101},
		{"the own origin as a proxy forwards it", func(*app.Config) {}, func(*Server) http.Header {
			return origin("https://desk.example", "X-Forwarded-Host", "desk.example")
		}, 101},
		{"another origin by default", func(*app.Config) {}, func(*Server) http.Header { return origin("https://evil.example") }, 403},
		{"a listed origin", listed, func(*Server) http.Header { return origin("https://site.example") }, 101},
		{"a listed origin, other case and default port", listed, func(*Server) http.Header { return origin("https://other.EXAMPLE:443") }, 101},
		{"an origin not listed", listed, func(*Server) http.Header { return origin("https://evil.example") }, 403},
		{"a listed host over another scheme", listed, func(*Server) http.Header { return origin("http://site.example") }, 403},
		{"the CORS list when none is given", func(c *app.Config) { c.CORSOrigins = "https://site.example" },
			func(*Server) http.Header { return origin("https://site.example") }, 101},
		{"a sandboxed page", func(*app.Config) {}, func(*Server) http.Header { return origin("null") }, 403},
		{"any origin with *", func(c *app.Config) { c.AllowedOrigins = "*" }, func(*Server) http.Header { return origin("https://evil.example") }, 101},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := startLogged(t, tc.change)
			h := tc.header(s)
			code, body := dialOrigin(t, s, h)
			if code != tc.want {
				t.Fatalf("ws = %d %s, want %d", code, body, tc.want)
			}
			sseWant := map[int]int{101: 200, 403: 403}[tc.want]
			scode, sbody := sseOrigin(t, s, h)
			if scode != sseWant {
				t.Fatalf("sse = %d %s, want %d", scode, sbody, sseWant)
			}
			if tc.want == 403 {
				for _, b := range []string{body, sbody} {
					var e struct {
						Error struct{ Code string } `json:"error"`
					}
					if json.Unmarshal([]byte(b), &e) != nil || e.Error.Code != "origin_not_allowed" {
						t.Fatalf("refusal body = %s, want error origin_not_allowed", b)
					}
				}
			}
		})
	}
}
