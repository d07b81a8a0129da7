package browsertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestRestartUnderBothPages restarts the server under a console and a
// demo page in the middle of a chat: both show "Reconnecting…", come back
// by themselves, and every line shows exactly once — including one the
// user sent while the server was down.
func TestRestartUnderBothPages(t *testing.T) {
	agent := signedInAgent(t, "Rita")
	uid, tok := newUser(t)
	user := chatWithAgent(t, "user", tok, 1440, 900, "Before the restart", "Rita")
	cid, _, _ := userConversation(t, tok)
	agent.selectConv(cid)
	agent.waitLine("user", "Before the restart")
	agent.typeLine("#chat-input", "Agent before the restart")
	user.waitLine("agent", "Agent before the restart")

	env.srv.stop()
	t.Cleanup(func() { // a failure below must not leave the later tests without a server
		if env.srv.cmd == nil {
			_ = env.srv.start()
		}
	})
	for _, p := range []*page{agent, user} {
		p.wait("reconnecting banner", `document.body.dataset.state === "reconnecting" && !document.querySelector("#conn-banner").hidden &&
			document.querySelector("#conn-banner").textContent.includes("Reconnecting")`)
	}
	// On a phone the chat panel fills the window: the banner must still show.
	user.bannerOnTop()
	user.do("narrow", chromedp.EmulateViewport(360, 740))
	user.bannerOnTop()
	user.screenshot("demo-reconnecting-360")
	user.do("wide again", chromedp.EmulateViewport(1440, 900))
	agent.bannerOnTop()
	user.typeLine("#chat-input", "Sent while down")
	time.Sleep(time.Second) // a retry or two fails against the closed port
	if err := env.srv.start(); err != nil {
		t.Fatal(err)
	}
	agent.waitOpen()
	user.waitOpen()
	user.waitLine("user", "Sent while down")
	agent.waitLine("user", "Sent while down")
	agent.typeLine("#chat-input", "Agent after the restart")
	user.waitLine("agent", "Agent after the restart")
	user.screenshot("demo-chat-open-1440")
	if bad := user.unlabelled(); len(bad) > 0 {
		t.Errorf("demo, chat open: controls without an accessible name: %v", bad)
	}
	ingest(t, fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"text":"after the restart"}}`, uid))
	user.wait("badge counts it", `document.querySelector("#bell-badge").textContent.trim() === "1"`)

	time.Sleep(500 * time.Millisecond) // room for a doubled frame to show
	for _, line := range []string{"Before the restart", "Agent before the restart", "Sent while down", "Agent after the restart"} {
		for _, p := range []*page{agent, user} {
			if n := p.lines(line); n != 1 {
				t.Errorf("%s shows %q %d times, want once", p.name, line, n)
			}
		}
	}
}

// TestReloadKeepsAgentLoggedIn: a reload of the console keeps the agent
// signed in and leaves no second connection behind on the server.
func TestReloadKeepsAgentLoggedIn(t *testing.T) {
	stamp := newUID()
	email := fmt.Sprintf("reload-agent-%d@example.com", stamp)
	_, pw := addAgent(t, email, "Ray")
	before := connections(t)
	agent := newPage(t, "agent", 1440, 900)
	agent.login(email, pw)
	waitConnections(t, before+1)
	if eval[bool](agent, `Object.keys(localStorage).length > 0`) {
		t.Error(`without "remember me" the token went to localStorage`)
	}
	if eval[bool](agent, `document.cookie !== ""`) {
		t.Error("the console set a cookie")
	}
	agent.do("reload", chromedp.Reload())
	agent.waitOpen()
	if !eval[bool](agent, `!document.querySelector("#app").hidden && document.querySelector("#login-form").hidden`) {
		t.Fatal("after a reload the console shows the login again")
	}
	if got := eval[string](agent, `document.querySelector("#agent-name").textContent`); got != "Ray" {
		t.Fatalf("agent name after reload = %q", got)
	}
	waitConnections(t, before+1)
}

// connections is the server's count of open client connections.
func connections(tb testing.TB) int {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, env.srv.url("/internal/v1/stats"), nil)
	req.Header.Set("Authorization", "Bearer "+ingestKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Connections int }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		tb.Fatal(err)
	}
	return out.Connections
}

// waitConnections waits until the server counts n connections and they
// stay n for a moment (a ghost would show up as n+1).
func waitConnections(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	steady := 0
	for time.Now().Before(deadline) {
		if connections(tb) == n {
			if steady++; steady == 5 {
				return
			}
		} else {
			steady = 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("connections = %d, want %d", connections(tb), n)
}

// bannerOnTop fails the test unless the "Reconnecting…" banner is the
// topmost thing where it is drawn, so no panel covers it.
func (p *page) bannerOnTop() {
	p.tb.Helper()
	p.wait("the banner uncovered", `(() => {
		const b = document.querySelector("#conn-banner"), r = b.getBoundingClientRect();
		return r.height > 0 && b.contains(document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2));
	})()`)
}
