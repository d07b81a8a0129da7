package browsertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestPagesAllowOnlyTheirOwnScripts: the pages come with a
// Content-Security-Policy that allows scripts from their own origin only,
// and the browser holds them to it (an injected inline script does not run).
func TestPagesAllowOnlyTheirOwnScripts(t *testing.T) {
	for _, path := range []string{"/console/", "/demo/", "/demo/main.js", "/pushdesk.js"} {
		res, err := http.Get(env.srv.url(path))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		csp := res.Header.Get("Content-Security-Policy")
		directives := map[string]string{}
		for _, d := range strings.Split(csp, ";") {
			if f := strings.Fields(d); len(f) > 0 {
				directives[f[0]] = strings.Join(f[1:], " ")
			}
		}
		if directives["default-src"] != "'none'" || directives["script-src"] != "'self'" {
			t.Errorf("%s: Content-Security-Policy %q, want default-src 'none' and script-src 'self' only", path, csp)
		}
	}
	_, tok := newUser(t)
	user := newPage(t, "user", 1440, 900)
	user.open("/demo/?token=" + tok)
	user.waitOpen()
	eval[chromedp.Void](user, `(() => { const s = document.createElement("script"); s.textContent = "window.__inlineRan = true"; document.body.append(s); })()`)
	user.wait("the violation reported", `window.__csp.some((v) => v.startsWith("script-src"))`)
	if eval[bool](user, "window.__inlineRan === true") {
		t.Fatal("an inline script ran")
	}
}

// TestTokensStayOutOfCookiesAndLocalStorage: both pages keep the token in
// sessionStorage, and in localStorage only when "remember me" is ticked;
// never in a cookie.
func TestTokensStayOutOfCookiesAndLocalStorage(t *testing.T) {
	const stored = `JSON.stringify([Object.values(sessionStorage).join(" "), Object.values(localStorage).join(" "), document.cookie])`
	where := func(p *page, tok string) (session, local, cookie bool) {
		t.Helper()
		var v [3]string
		if err := json.Unmarshal([]byte(eval[string](p, stored)), &v); err != nil {
			t.Fatal(err)
		}
		return strings.Contains(v[0], tok), strings.Contains(v[1], tok), v[2] != ""
	}

	_, tok := newUser(t)
	user := newPage(t, "user", 360, 740)
	user.open("/demo/?token=" + tok)
	user.waitOpen()
	if s, l, c := where(user, tok); !s || l || c {
		t.Errorf("demo, token from the address: in sessionStorage %v, localStorage %v, a cookie %v; want only sessionStorage", s, l, c)
	}
	user.do("sign out", chromedp.Click(chromedp.CSS("#signout")))
	user.wait("the form", `!document.querySelector("#signin").hidden`)
	if s, l, _ := where(user, tok); s || l {
		t.Errorf("after sign out the token is still stored (sessionStorage %v, localStorage %v)", s, l)
	}
	if bad := user.unlabelled(); len(bad) > 0 {
		t.Errorf("demo sign-in: controls without an accessible name: %v", bad)
	}
	user.do("paste with remember me",
		chromedp.SendKeys(chromedp.CSS("#token-input"), tok),
		chromedp.Click(chromedp.CSS("#token-remember")),
		chromedp.Click(chromedp.CSS("#token-connect")))
	user.waitOpen()
	if s, l, c := where(user, tok); s || !l || c {
		t.Errorf(`demo, "remember me": in sessionStorage %v, localStorage %v, a cookie %v; want only localStorage`, s, l, c)
	}

	email := fmt.Sprintf("remember-%d@example.com", newUID())
	_, pw := addAgent(t, email, "Rem")
	agent := newPage(t, "agent", 1440, 900)
	agent.open("/console/")
	agent.wait("the login form", `!document.querySelector("#login-form").hidden`)
	if bad := agent.unlabelled(); len(bad) > 0 {
		t.Errorf("console login: controls without an accessible name: %v", bad)
	}
	agent.do("log in, remembered",
		chromedp.SendKeys(chromedp.CSS("#login-email"), email),
		chromedp.SendKeys(chromedp.CSS("#login-password"), pw),
		chromedp.Click(chromedp.CSS("#login-remember")),
		chromedp.Click(chromedp.CSS("#login-submit")))
	agent.waitOpen()
	jwt := eval[string](agent, `JSON.parse(localStorage.getItem("pushdesk.console.session") || "{}").token || ""`)
	if jwt == "" {
		t.Fatal(`console, "remember me": no session in localStorage`)
	}
	if s, _, c := where(agent, jwt); s || c {
		t.Errorf(`console, "remember me": also in sessionStorage %v, a cookie %v`, s, c)
	}
	// A new tab of the same browser (a new session) is still signed in.
	agent.do("a new tab's session", chromedp.Evaluate[chromedp.Void](`sessionStorage.clear()`))
	agent.do("reload", chromedp.Reload())
	agent.waitOpen()
	if got := eval[string](agent, `document.querySelector("#agent-name").textContent`); got != "Rem" {
		t.Errorf("remembered agent after reload = %q, want Rem", got)
	}
}
