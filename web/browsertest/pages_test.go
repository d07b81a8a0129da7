package browsertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// What the tests do on the two pages, through the ids the pages promise
// (docs/client.md lists them).

func (p *page) open(path string) {
	p.tb.Helper()
	p.do("open "+path, chromedp.Navigate(env.srv.url(path)))
}

// login signs an agent in on the console with email and password.
func (p *page) login(email, password string) {
	p.tb.Helper()
	p.open("/console/")
	p.do("log in",
		chromedp.WaitVisible(chromedp.CSS("#login-email")),
		chromedp.SendKeys(chromedp.CSS("#login-email"), email),
		chromedp.SendKeys(chromedp.CSS("#login-password"), password),
		chromedp.Click(chromedp.CSS("#login-submit")),
	)
	p.waitOpen()
}

// waitOpen waits until the page's stream is up and the banner is gone.
func (p *page) waitOpen() {
	p.tb.Helper()
	p.wait("connected", `document.body.dataset.state === "open" && document.querySelector("#conn-banner").hidden`)
}

// type types text into a composer and presses Enter.
func (p *page) typeLine(sel, text string) {
	p.tb.Helper()
	p.do("type "+text, chromedp.SendKeys(chromedp.CSS(sel), text), chromedp.KeyEvent("\r"))
}

// lines counts chat lines showing exactly text (in #chat-lines), and how
// many of them are still pending.
func (p *page) lines(text string) (shown int) {
	p.tb.Helper()
	return eval[int](p, fmt.Sprintf(`[...document.querySelectorAll("#chat-lines .line .text")].filter((e) => e.textContent === %s).length`, js(text)))
}

// waitLine waits for a confirmed line (with an id) of that text from that side.
func (p *page) waitLine(from, text string) {
	p.tb.Helper()
	p.wait(from+" line "+text, fmt.Sprintf(`[...document.querySelectorAll('#chat-lines .line[data-id][data-from="%s"] .text')].some((e) => e.textContent === %s)`, from, js(text)))
}

// conv is a selector for a conversation in the console's list.
func conv(cid string) string { return fmt.Sprintf(`#conv-list [data-cid="%s"]`, cid) }

// selectConv opens a conversation in the console's chat pane.
func (p *page) selectConv(cid string) {
	p.tb.Helper()
	el := fmt.Sprintf(`document.querySelector(%s)`, js(conv(cid)))
	p.wait("conversation "+cid+" listed", "!!"+el)
	eval[chromedp.Void](p, fmt.Sprintf(`((el) => (el.matches("button") ? el : el.querySelector("button") || el).click())(%s)`, el))
	p.wait("conversation "+cid+" selected", fmt.Sprintf(`((el) => el.getAttribute("aria-current") === "true" || !!el.querySelector("[aria-current=true]"))(%s)`, el))
}

// userConversation asks the REST API for the user's live conversation.
func userConversation(tb testing.TB, tok string) (id, status, agent string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, env.srv.url("/api/v1/chat/conversations"), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out struct {
		Conversations []struct {
			ID     string
			Status string
			Agent  *struct{ ID, Name string }
		}
	}
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatalf("conversations: %d %s", res.StatusCode, b)
	}
	for _, c := range out.Conversations {
		if c.Status != "closed" {
			if c.Agent != nil {
				agent = c.Agent.Name
			}
			return c.ID, c.Status, agent
		}
	}
	return "", "", ""
}

// closeLeftovers closes the user's conversation when a test ends, so the
// next test's agents are not handed it.
func closeLeftovers(tb testing.TB, tok string) {
	tb.Cleanup(func() {
		id, _, _ := userConversation(tb, tok)
		if id == "" {
			return
		}
		req, _ := http.NewRequest(http.MethodPost, env.srv.url("/api/v1/chat/conversations/"+id+"/close"), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	})
}

// unreadTotal is the user's unread total as the REST API says.
func unreadTotal(tb testing.TB, tok string) int {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, env.srv.url("/api/v1/me/unread"), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Total int }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		tb.Fatal(err)
	}
	return out.Total
}

// signedInAgent makes a console login named name and signs it in on a
// console page of its own.
func signedInAgent(t *testing.T, name string) *page {
	t.Helper()
	email := fmt.Sprintf("%s-%d@example.com", strings.ToLower(name), newUID())
	_, pw := addAgent(t, email, name)
	p := newPage(t, "agent "+name, 1440, 900)
	p.login(email, pw)
	return p
}

// newUser is a fresh user's token; their conversation is closed when the
// test ends.
func newUser(t *testing.T) (uid uint64, tok string) {
	t.Helper()
	uid = newUID()
	tok = token(t, uid, "", "")
	closeLeftovers(t, tok)
	return uid, tok
}

// chatWithAgent opens the demo page for tok on a page of its own (width ×
// height), opens the chat, sends line and waits until agent is named as
// the one the user chats with.
func chatWithAgent(t *testing.T, name, tok string, width, height int64, line, agent string) *page {
	t.Helper()
	p := newPage(t, name, width, height)
	p.open("/demo/?token=" + tok)
	p.waitOpen()
	p.do("open chat", chromedp.Click(chromedp.CSS("#chat-open")))
	p.typeLine("#chat-input", line)
	p.wait("assigned to "+agent, fmt.Sprintf(`document.querySelector("#chat-agent")?.textContent.trim() === %s`, js(agent)))
	return p
}
