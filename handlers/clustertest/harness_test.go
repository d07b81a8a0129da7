package clustertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/internal/testsvc"
)

const (
	secret    = "cluster-secret"
	ingestKey = "cluster-ingest"
)

var (
	binary  string // the pushdesk binary under test
	workDir string
	nextUID atomic.Uint64
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if _, err := exec.LookPath("redis-server"); err != nil {
		fmt.Fprintln(os.Stderr, "clustertest: redis-server is not installed (Debian package redis-server)")
		return 1
	}
	dir, err := os.MkdirTemp("", "pushdesk-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	workDir = dir
	binary = filepath.Join(dir, "pushdesk")
	build := exec.Command("go", "build", "-race", "-o", binary, "github.com/pushdesk/pushdesk")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "clustertest: build:", err)
		return 1
	}
	nextUID.Store(uint64(time.Now().UnixNano()%1_000_000)*1000 + 5_000_000_000)
	return m.Run()
}

func newUID() uint64 { return nextUID.Add(1) }

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// redisServer is a redis-server process of the test's own, with an
// append-only file so a restart keeps its data like a production Redis.
type redisServer struct {
	tb   testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
}

func startRedis(tb testing.TB) *redisServer {
	r := &redisServer{tb: tb, port: freePort(tb), dir: tb.TempDir()}
	r.start()
	tb.Cleanup(func() { r.stop() })
	return r
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisServer) start() {
	r.tb.Helper()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "")
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatal(err)
	}
	waitTCP(r.tb, fmt.Sprintf("127.0.0.1:%d", r.port))
}

func (r *redisServer) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	_ = r.cmd.Wait()
	r.cmd = nil
}

// loseData kills the server (as kill -9 would) and starts it again on the
// same port with its files gone: a Redis restarted without persistence.
func (r *redisServer) loseData() {
	r.tb.Helper()
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
	r.dir = r.tb.TempDir()
	r.start()
}

func waitTCP(tb testing.TB, addr string) {
	tb.Helper()
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("%s did not open", addr)
}

// freshDatabase returns a DSN for a new database of the test's own
// (prefix plus a unique suffix), dropped when the test ends: after its
// instances, whose cleanups were registered later, are killed.
func freshDatabase(tb testing.TB, prefix string) string {
	tb.Helper()
	return testsvc.Database(tb, prefix)
}

// instance is one pushdesk process.
type instance struct {
	tb       testing.TB
	name     string
	addr     string
	internal string
	cmd      *exec.Cmd
	log      string
	exited   chan struct{}
}

type instanceOpt func(env []string) []string

// startInstance starts `pushdesk serve` and waits until it is ready.
func startInstance(tb testing.TB, name, redisURL, dsn string, opts ...instanceOpt) *instance {
	tb.Helper()
	return startCommand(tb, "serve", name, redisURL, dsn, opts...)
}

// startCommand starts `pushdesk cmd` (serve or worker) and waits until it
// is ready. addr is its one listener: PUSHDESK_ADDR for serve,
// PUSHDESK_HEALTH_ADDR for worker.
func startCommand(tb testing.TB, cmd, name, redisURL, dsn string, opts ...instanceOpt) *instance {
	tb.Helper()
	in := &instance{tb: tb, name: name, addr: fmt.Sprintf("127.0.0.1:%d", freePort(tb)), log: filepath.Join(tb.TempDir(), name+".log"), exited: make(chan struct{})}
	in.internal = in.addr
	listen := "PUSHDESK_ADDR="
	if cmd == "worker" {
		listen = "PUSHDESK_HEALTH_ADDR="
	}
	env := append(os.Environ(),
		listen+in.addr, "PUSHDESK_REDIS_URL="+redisURL, "PUSHDESK_MYSQL_DSN="+dsn,
		"PUSHDESK_JWT_SECRET="+secret, "PUSHDESK_INGEST_KEY="+ingestKey, "PUSHDESK_INSTANCE_ID="+name,
		"PUSHDESK_HEARTBEAT=5s")
	for _, o := range opts {
		env = o(env)
	}
	logf, err := os.Create(in.log)
	if err != nil {
		tb.Fatal(err)
	}
	in.cmd = exec.Command(binary, cmd)
	in.cmd.Env = env
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	if err := in.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = in.cmd.Wait(); logf.Close(); close(in.exited) }()
	tb.Cleanup(func() {
		in.kill()
		if tb.Failed() {
			b, _ := os.ReadFile(in.log)
			tb.Logf("--- %s log (tail) ---\n%s", name, tail(string(b), 3000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if res, err := http.Get("http://" + in.addr + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return in
			}
		}
		select {
		case <-in.exited:
			b, _ := os.ReadFile(in.log)
			tb.Fatalf("%s exited at start:\n%s", name, tail(string(b), 3000))
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not ready in 60s", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (in *instance) kill() {
	if in.cmd.Process != nil {
		_ = in.cmd.Process.Kill()
	}
	<-in.exited
}

func (in *instance) terminate() {
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
}

func (in *instance) waitExit(d time.Duration) bool {
	select {
	case <-in.exited:
		return true
	case <-time.After(d):
		return false
	}
}

func token(tb testing.TB, uid uint64) string {
	tb.Helper()
	tok, err := auth.NewTokens(secret).Mint(auth.Identity{UID: uid}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// post sends a message to uid through in and returns its id, retrying
// (like the main site) while the instance answers 503.
func (in *instance) post(tb testing.TB, uid uint64, text string) string {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := in.request(tb, http.MethodPost, "/internal/v1/messages", ingestKey,
			fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"text":%q}}`, uid, text))
		if code == 202 {
			return body["ids"].([]any)[0].(string)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("post via %s = %d %v", in.name, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (in *instance) request(tb testing.TB, method, path, bearer, body string) (int, map[string]any) {
	tb.Helper()
	req, _ := http.NewRequest(method, "http://"+in.internal+path, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, map[string]any{"transport": err.Error()}
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

// client is a WebSocket user that records every message id it receives.
type client struct {
	tb     testing.TB
	conn   *websocket.Conn
	frames chan map[string]any
	closed chan int // the close code
}

func dial(tb testing.TB, in *instance, uid uint64) *client {
	tb.Helper()
	return dialToken(tb, in, token(tb, uid))
}

// dialToken is dial with a token of the caller's.
func dialToken(tb testing.TB, in *instance, tok string) *client {
	tb.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+in.addr+"/ws?token="+tok, nil)
	if err != nil {
		tb.Fatalf("dial %s: %v", in.name, err)
	}
	c := &client{tb: tb, conn: conn, frames: make(chan map[string]any, 1024), closed: make(chan int, 1)}
	tb.Cleanup(func() { conn.Close() })
	go func() {
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				code := 0
				var ce *websocket.CloseError
				if ok := asClose(err, &ce); ok {
					code = ce.Code
				}
				c.closed <- code
				close(c.frames)
				return
			}
			var f map[string]any
			_ = json.Unmarshal(data, &f)
			c.frames <- f
		}
	}()
	if f := c.next(10 * time.Second); f == nil || f["type"] != "hello" {
		tb.Fatalf("first frame from %s = %v, want hello", in.name, f)
	}
	return c
}

func asClose(err error, ce **websocket.CloseError) bool {
	e, ok := err.(*websocket.CloseError)
	if ok {
		*ce = e
	}
	return ok
}

// next returns the next frame, or nil on timeout or close.
func (c *client) next(d time.Duration) map[string]any {
	select {
	case f, ok := <-c.frames:
		if !ok {
			return nil
		}
		return f
	case <-time.After(d):
		return nil
	}
}

// waitMsg waits for a msg frame with id.
func (c *client) waitMsg(id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		f := c.next(time.Until(deadline))
		if f == nil {
			return false
		}
		if f["type"] == "msg" && f["id"] == id {
			return true
		}
	}
	return false
}
