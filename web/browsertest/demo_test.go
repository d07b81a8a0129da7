package browsertest

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBellCountsAndMarkAllRead: posted notifications show in the bell,
// a collapsed one once with its count, and "mark all read" clears them
// on the server too.
func TestBellCountsAndMarkAllRead(t *testing.T) {
	uid := newUID()
	tok := token(t, uid, "", "")
	user := newPage(t, "user", 1440, 900)
	user.open("/demo/?token=" + tok)
	user.waitOpen()
	user.wait("no badge", `document.querySelector("#bell-badge").hidden`)

	first := ingest(t, fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"text":"Ann commented on your post"}}`, uid))
	var likes string
	for i := range 3 {
		likes = ingest(t, fmt.Sprintf(`{"to_uid":%d,"kind":"like","collapse_key":"post-1","body":{"text":"%d people liked your post"}}`, uid, i+1))
	}
	_ = likes
	user.wait("badge 2", `document.querySelector("#bell-badge").textContent.trim() === "2" && !document.querySelector("#bell-badge").hidden`)
	user.do("open the bell", chromedp.Click(chromedp.CSS("#bell")))
	user.wait("list open", `!document.querySelector("#bell-list").hidden && document.querySelector("#bell").getAttribute("aria-expanded") === "true"`)
	user.wait("two entries, the likes collapsed ×3", `document.querySelectorAll("#bell-list li[data-id]").length === 2 &&
		[...document.querySelectorAll("#bell-list li[data-id] .count")].some((e) => e.textContent.includes("3"))`)
	if got := eval[string](user, `document.querySelector("#bell-list li[data-id] .text").textContent`); got != "3 people liked your post" {
		t.Errorf("newest entry = %q, want the collapsed likes with their latest text", got)
	}
	if !eval[bool](user, fmt.Sprintf(`!!document.querySelector('#bell-list li[data-id="%s"]')`, first)) {
		t.Errorf("the comment %s is not listed", first)
	}
	user.screenshot("demo-bell")
	if bad := user.unlabelled(); len(bad) > 0 {
		t.Errorf("demo, bell open: controls without an accessible name: %v", bad)
	}
	user.do("narrow", chromedp.EmulateViewport(360, 740))
	user.screenshot("demo-bell-360")
	user.do("wide again", chromedp.EmulateViewport(1440, 900))

	user.do("mark all read", chromedp.Click(chromedp.CSS("#mark-all-read")))
	user.wait("badge cleared", `document.querySelector("#bell-badge").hidden`)
	user.wait("entries read", `[...document.querySelectorAll("#bell-list li[data-id]")].every((li) => li.dataset.read === "true")`)
	if n := unreadTotal(t, tok); n != 0 {
		t.Fatalf("server unread after mark all read = %d, want 0", n)
	}
	if v := user.cspViolations(); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", v)
	}
}

// TestSSEWhenWebSocketIsBlocked: with WebSocket refused, the page falls
// back to SSE and still gets notifications and chat lines, and its chat
// lines go out over REST.
func TestSSEWhenWebSocketIsBlocked(t *testing.T) {
	agent := signedInAgent(t, "Sam")
	uid, tok := newUser(t)
	user := newPage(t, "user", 360, 740)
	user.blockWebSocket()
	user.open("/demo/?token=" + tok)
	user.waitOpen()
	if tr := eval[string](user, "document.body.dataset.transport"); tr != "sse" {
		t.Fatalf("transport = %q with WebSocket blocked, want sse", tr)
	}
	if n := eval[int](user, "window.__wsTried"); n < 2 {
		t.Fatalf("the page tried WebSocket %d times before SSE, want 2", n)
	}
	id := ingest(t, fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"text":"over SSE"}}`, uid))
	user.wait("badge 1", `document.querySelector("#bell-badge").textContent.trim() === "1"`)
	// The bell is shut, so it fetched nothing: the entry came down the stream.
	user.wait("the message itself", fmt.Sprintf(`document.querySelector('#bell-items li[data-id="%s"] .text')?.textContent === "over SSE"`, id))

	user.do("open chat", chromedp.Click(chromedp.CSS("#chat-open")))
	user.typeLine("#chat-input", "Sent over REST")
	user.waitLine("user", "Sent over REST")
	cid, _, _ := userConversation(t, tok)
	user.wait("assigned to Sam", `document.querySelector("#chat-agent").textContent.trim() === "Sam"`)
	agent.selectConv(cid)
	agent.waitLine("user", "Sent over REST")
	agent.typeLine("#chat-input", "Answer over SSE")
	user.waitLine("agent", "Answer over SSE")
	if tr := eval[string](user, "document.body.dataset.transport"); tr != "sse" {
		t.Fatalf("transport = %q at the end, want sse", tr)
	}
}
