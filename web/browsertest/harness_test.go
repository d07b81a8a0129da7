package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/pushdesk/pushdesk/internal/testsvc"
)

const (
	secret    = "browser-secret"
	ingestKey = "browser-ingest"
)

// env is what TestMain set up: one server, one browser.
var env struct {
	binary   string
	dir      string
	redisURL string
	dsn      string
	srv      *server
	browser  context.Context // the allocator's first context: the browser itself
	shots    string          // screenshot folder
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	chromium := os.Getenv("PUSHDESK_CHROMIUM")
	if chromium == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				chromium = p
				break
			}
		}
	}
	if chromium == "" {
		if os.Getenv("PUSHDESK_BROWSER_TESTS") == "required" {
			fmt.Fprintln(os.Stderr, "browsertest: no Chromium found (apt-get install chromium, or set PUSHDESK_CHROMIUM)")
			return 1
		}
		fmt.Fprintln(os.Stderr, "browsertest: skipped, no Chromium (apt-get install chromium; PUSHDESK_BROWSER_TESTS=required makes this a failure)")
		return 0
	}
	dir, err := os.MkdirTemp("", "pushdesk-browser-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	env.dir = dir
	env.binary = filepath.Join(dir, "pushdesk")
	build := exec.Command("go", "build", "-o", env.binary, "github.com/pushdesk/pushdesk")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "browsertest: build:", err)
		return 1
	}
	redis, url, err := testsvc.StartRedis(dir)
	env.redisURL = url
	if err != nil {
		fmt.Fprintln(os.Stderr, "browsertest:", err)
		return 1
	}
	defer func() { _ = redis.Process.Kill(); _ = redis.Wait() }()
	// This run's own database: two runs side by side (two checkouts, or
	// CI next to a developer) do not share one.
	dsn, drop, err := testsvc.OwnDatabase("pushdesk_browsertest")
	if err != nil {
		fmt.Fprintln(os.Stderr, "browsertest: mysql:", err)
		return 1
	}
	defer drop()
	env.dsn = dsn
	if out, err := pushdesk("migrate"); err != nil {
		fmt.Fprintf(os.Stderr, "browsertest: migrate: %v\n%s", err, out)
		return 1
	}
	env.srv = &server{addr: fmt.Sprintf("127.0.0.1:%d", freePort()), log: filepath.Join(dir, "server.log")}
	if err := env.srv.start(); err != nil {
		fmt.Fprintln(os.Stderr, "browsertest:", err)
		return 1
	}
	defer env.srv.stop()

	env.shots = "screenshots"
	_ = os.MkdirAll(env.shots, 0o755)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if _, err := chromedp.Run(browser, chromedp.Evaluate[chromedp.Void]("1")); err != nil {
		fmt.Fprintln(os.Stderr, "browsertest: start chromium:", err)
		return 1
	}
	env.browser = browser
	code := m.Run()
	if code != 0 {
		if b, err := os.ReadFile(env.srv.log); err == nil {
			fmt.Fprintf(os.Stderr, "--- server log (tail) ---\n%s\n", tail(string(b), 4000))
		}
	}
	return code
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func freePort() int {
	port, err := testsvc.FreePort()
	if err != nil {
		panic(err)
	}
	return port
}

func serverEnv() []string {
	return append(os.Environ(),
		"PUSHDESK_REDIS_URL="+env.redisURL, "PUSHDESK_MYSQL_DSN="+env.dsn,
		"PUSHDESK_JWT_SECRET="+secret, "PUSHDESK_INGEST_KEY="+ingestKey,
		"PUSHDESK_INTERNAL_ADDR=", "PUSHDESK_CHAT_SETTLE=300ms")
}

// pushdesk runs a pushdesk subcommand against the tests' stores.
func pushdesk(args ...string) (string, error) {
	cmd := exec.Command(env.binary, args...)
	cmd.Env = serverEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// server is the pushdesk process the pages talk to; it can be stopped
// and started again on the same address.
type server struct {
	addr string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

func (s *server) start() error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	s.cmd = exec.Command(env.binary, "serve")
	s.cmd.Env = append(serverEnv(), "PUSHDESK_ADDR="+s.addr)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); logf.Close(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(s.url("/readyz")); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("pushdesk exited at start; log in %s", s.log)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("pushdesk not ready in 60 s")
}

// stop ends the process gracefully (SIGTERM: clients are told to reconnect).
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

var uidSeq = time.Now().Unix() % 100000 * 1000

func newUID() uint64 { uidSeq++; return uint64(uidSeq) }

// token mints a JWT the server accepts.
func token(tb testing.TB, sub uint64, role, name string) string {
	tb.Helper()
	claims := jwt.MapClaims{"sub": fmt.Sprint(sub), "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	if role != "" {
		claims["role"] = role
	}
	if name != "" {
		claims["name"] = name
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

var passwordLine = regexp.MustCompile(`password \(shown once, store it now\): (\S+)`)
var agentLine = regexp.MustCompile(`agent (\d+) added`)

// addAgent makes a console login and returns its id and password.
func addAgent(tb testing.TB, email, name string) (string, string) {
	tb.Helper()
	out, err := pushdesk("agent", "add", "--email", email, "--name", name)
	if err != nil {
		tb.Fatalf("agent add: %v\n%s", err, out)
	}
	pw, id := passwordLine.FindStringSubmatch(out), agentLine.FindStringSubmatch(out)
	if pw == nil || id == nil {
		tb.Fatalf("agent add printed no id/password:\n%s", out)
	}
	return id[1], pw[1]
}

// ingest posts a notification to a user and returns its id.
func ingest(tb testing.TB, body string) string {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, env.srv.url("/internal/v1/messages"), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ingestKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out struct{ IDs []string }
	if res.StatusCode/100 != 2 || json.Unmarshal(b, &out) != nil || len(out.IDs) == 0 {
		tb.Fatalf("ingest = %d %s", res.StatusCode, b)
	}
	return out.IDs[0]
}

// page is one browser tab in a browser context of its own (its own
// storage, like a second browser or a private window).
type page struct {
	tb   testing.TB
	ctx  context.Context
	name string
	logs *lockedBuffer
}

func newPage(tb testing.TB, name string, width, height int64) *page {
	tb.Helper()
	p := &page{tb: tb, name: name, logs: &lockedBuffer{}}
	ctx, cancel := chromedp.NewContext(env.browser, chromedp.WithNewBrowserContext(), chromedp.WithListener(p.listen))
	tb.Cleanup(cancel)
	p.ctx = ctx
	// Every page counts Content-Security-Policy violations, so a test can
	// say there were none.
	watch := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{
			Source: `window.__csp = []; document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));`,
		})
		return err
	})
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height), watch); err != nil {
		tb.Fatalf("%s: set up: %v", name, err)
	}
	return p
}

// listen keeps the page's console output and uncaught exceptions.
func (p *page) listen(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		p.logs.printf("console.%s: %s", ev.Type, strings.Join(parts, " "))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		p.logs.printf("exception: %s", msg)
	}
}

// blockWebSocket makes the page's WebSockets fail their handshake, as
// behind a proxy that does not pass upgrades. (Chromium's request
// blocking does not cover WebSockets, so the page's WebSocket is pointed
// at a path where the real server refuses the upgrade.) Call it before
// open.
func (p *page) blockWebSocket() {
	p.tb.Helper()
	p.do("block WebSocket", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{
			Source: `window.__wsTried = 0; window.WebSocket = class extends WebSocket {
				constructor(url, protocols) { window.__wsTried++; super(String(url).replace("/ws?", "/no-upgrade-here?"), protocols); }
			};`,
		})
		return err
	}))
}

// cspViolations are the page's Content-Security-Policy violations so far.
func (p *page) cspViolations() []string { return eval[[]string](p, "window.__csp || []") }

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", args...)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return tail(l.b.String(), 6000)
}

// do runs steps with a deadline, failing the test with the page's console log.
func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.tb.Fatalf("%s: %s: %v\nconsole:\n%s", p.name, what, err, p.logs)
	}
}

// eval evaluates a JS expression into T.
func eval[T any](p *page, expr string) T {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.tb.Fatalf("%s: eval %s: %v\nconsole:\n%s", p.name, expr, err, p.logs)
	}
	return v
}

// wait polls a JS expression until it is truthy.
func (p *page) wait(what, expr string) {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 25*time.Second)
	defer cancel()
	// An element the page has not drawn yet throws: that is "not yet".
	guarded := "(() => { try { return !!(" + expr + ") } catch { return false } })()"
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](guarded, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		html, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText.slice(0, 1500) : ''"))
		p.tb.Fatalf("%s: waiting for %s (%s): %v\npage text:\n%s\nconsole:\n%s", p.name, what, expr, err, html, p.logs)
	}
}

// screenshot saves what the viewport shows, as a person at that window
// size sees it (a full-page capture would draw fixed panels where they
// are not).
func (p *page) screenshot(name string) {
	p.tb.Helper()
	b, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.tb.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(env.shots, name+".png")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		p.tb.Fatal(err)
	}
}

// js quotes a Go string as a JS string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
