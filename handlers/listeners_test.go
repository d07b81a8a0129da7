package handlers

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
)

// startServer runs a second in-process server with cfg changes applied.
func startServer(t *testing.T, change func(*app.Config)) *Server {
	t.Helper()
	cfg := srv.App.Cfg
	cfg.Addr, cfg.InternalAddr, cfg.RunWorkers, cfg.InstanceID = "127.0.0.1:0", "", false, ""
	change(&cfg)
	s, err := newProcess(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

// selfSigned writes a certificate for 127.0.0.1 and returns its paths and pool.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pushdesk test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSServesWSSAndHTTPS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	s := startServer(t, func(c *app.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	uid, seg := newUID(), uniqueSegment("tls")
	tok, err := auth.NewTokens(testSecret).Mint(auth.Identity{UID: uid, Groups: []string{seg}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
	conn, _, err := d.Dial("wss://"+s.Addr()+"/ws?token="+tok, nil)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer conn.Close()
	wc := &wsClient{tb: t, conn: conn}
	if f := wc.next(); f.str("type") != "hello" {
		t.Fatalf("first wss frame = %v", f)
	}
	// A message posted through the main server reaches the TLS instance.
	id := send(t, uid, "comment", "over tls")
	if f := wc.until("msg"); f.str("id") != id {
		t.Fatalf("wss msg = %v, want %s", f, id)
	}
	// A broadcast reaches it too: fan-outs write idle connections
	// directly, which must not bypass TLS.
	bid := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"text":"over tls"}}`)
	if f := wc.until("msg"); f.str("id") != bid || f["broadcast"] != true {
		t.Fatalf("wss msg after a broadcast = %v, want %s", f, bid)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := hc.Get("https://" + s.Addr() + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("https healthz = %v %v", res, err)
	}
	res.Body.Close()
}

func TestInternalListenerAndOps(t *testing.T) {
	s := startServer(t, func(c *app.Config) { c.InternalAddr = "127.0.0.1:0"; c.AdminPassword = "s3cret" })
	get := func(url string, auth func(*http.Request)) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if auth != nil {
			auth(req)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+testIngestKey) }
	pub, internal := "http://"+s.Addr(), "http://"+s.InternalAddr()
	if code, _ := get(pub+"/internal/v1/stats", bearer); code != 404 {
		t.Fatalf("public /internal/v1/stats = %d, want 404", code)
	}
	if code, body := get(internal+"/internal/v1/stats", bearer); code != 200 || !strings.Contains(body, `"connections"`) || !strings.Contains(body, `"online_users"`) {
		t.Fatalf("internal stats = %d %s", code, body)
	}
	if code, _ := get(internal+"/ws", nil); code != 404 {
		t.Fatalf("internal /ws = %d, want 404", code)
	}
	if code, body := get(internal+"/metrics", nil); code != 200 || !strings.Contains(body, "pushdesk_connections") {
		t.Fatalf("metrics = %d", code)
	}
	if code, body := get(internal+"/admin/queues/", nil); code != 401 || !strings.Contains(body, `"unauthorized"`) {
		t.Fatalf("asynqmon without credentials = %d %s, want 401", code, body)
	}
	if code, _ := get(internal+"/admin/queues/", func(r *http.Request) { r.SetBasicAuth("admin", "wrong") }); code != 401 {
		t.Fatalf("asynqmon with a wrong password = %d, want 401", code)
	}
	if code, body := get(internal+"/admin/queues/", func(r *http.Request) { r.SetBasicAuth("admin", "s3cret") }); code != 200 || !strings.Contains(strings.ToLower(body), "<html") {
		t.Fatalf("asynqmon = %d, want its page", code)
	}
	if code, body := get(internal+"/admin/queues/api/queues", func(r *http.Request) { r.SetBasicAuth("admin", "s3cret") }); code != 200 || !strings.Contains(body, "fast") {
		t.Fatalf("asynqmon api = %d %s, want the fast queue listed", code, body)
	}
}

func TestPresenceAndStats(t *testing.T) {
	uid := newUID()
	code, body := do(t, http.MethodGet, "/internal/v1/users/"+u64s(uid)+"/presence", testIngestKey, "")
	if code != 200 || body["online"] != false || body["connections"].(float64) != 0 || body["last_seen"] != nil {
		t.Fatalf("presence of a stranger = %d %v", code, body)
	}
	ws := dialWS(t, uid)
	ws.until("hello")
	_, body = do(t, http.MethodGet, "/internal/v1/users/"+u64s(uid)+"/presence", testIngestKey, "")
	if body["online"] != true || body["connections"].(float64) != 1 || body["last_seen"] == nil {
		t.Fatalf("presence while connected = %v", body)
	}
	if code, body := do(t, http.MethodGet, "/internal/v1/users/abc/presence", testIngestKey, ""); code != 400 || body["error"] == nil {
		t.Fatalf("presence of abc = %d %v, want 400", code, body)
	}
	ws.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = do(t, http.MethodGet, "/internal/v1/users/"+u64s(uid)+"/presence", testIngestKey, "")
		if body["online"] == false {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still online 5 s after closing: %v", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func u64s(v uint64) string { return ids.Format(v) }

func TestShutdownTellsClientsToReconnect(t *testing.T) {
	s := startServer(t, func(*app.Config) {})
	uid := newUID()
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws?token="+mint(t, uid), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addr()+"/sse?token="+mint(t, uid), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sse := &sseClient{tb: t, res: res, rd: bufio.NewReader(res.Body), evts: make(chan sseEvent, 64)}
	go sse.loop()
	sse.until("hello")
	done := make(chan struct{})
	go func() { s.Shutdown(context.Background()); close(done) }()
	if ev := sse.until("reconnect"); ev.event != "reconnect" {
		t.Fatalf("sse got %v, want event: reconnect", ev)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := conn.ReadMessage()
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
			t.Fatalf("ws read after shutdown: %v, want close 1012", err)
		}
		break
	}
	<-done
	if code, _ := do(t, http.MethodGet, "/internal/v1/users/"+u64s(uid)+"/presence", testIngestKey, ""); code != 200 {
		t.Fatal("presence after shutdown")
	}
	_, body := do(t, http.MethodGet, "/internal/v1/users/"+u64s(uid)+"/presence", testIngestKey, "")
	if body["online"] != false {
		t.Fatalf("presence after the instance stopped = %v, want offline", body)
	}
}

// A panic while acting on a client's frame ends that connection only: the
// client is unregistered and its writer stopped before the library takes
// the conn back for reuse, and the instance goes on serving.
func TestPanickingFrameEndsOnlyItsConnection(t *testing.T) {
	s := startServer(t, func(*app.Config) {})
	s.frameHook = func(ctx context.Context, c *hub.Client, data []byte) {
		if string(data) == `{"type":"boom"}` {
			panic("boom")
		}
		s.App.Session.HandleFrame(ctx, c, data)
	}
	base := "ws://" + s.Addr()
	victim := dialWSGroups(t, base, newUID())
	victim.send(`{"type":"boom"}`)
	_ = victim.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := victim.conn.ReadMessage(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the connection lived on after its handler panicked")
			}
			break
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if conns, _ := s.App.Hub.Stats(); conns == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the panicked connection is still registered")
		}
	}
	other := dialWSGroups(t, base, newUID())
	other.send(`{"type":"ping"}`)
	other.until("pong")
}
