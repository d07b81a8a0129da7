package browsertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestConsoleAlertsAndShortcuts: while the console's tab is hidden, a new
// conversation and a new line each bring a desktop notification and a
// tone, and nothing does while the agent looks at the conversation;
// Alt+↓/↑ move between conversations and Alt+C closes the selected one.
// Headless Chromium has no desktop, so the page's Notification and tab
// visibility are stand-ins that record what the page asked for.
func TestConsoleAlertsAndShortcuts(t *testing.T) {
	email := fmt.Sprintf("kim-%d@example.com", newUID())
	_, pw := addAgent(t, email, "Kim")
	agent := newPage(t, "agent Kim", 1440, 900)
	agent.fakeAlerts()
	agent.login(email, pw)
	agent.do("enable notifications", chromedp.Click(chromedp.CSS("#notify-enable")))
	agent.wait("notifications on", `document.querySelector("#notify-enable").dataset.permission === "granted"`)

	// The page chimes at most once every 1.5 s, and it just chimed to
	// confirm: let that pass, so the tones counted below are for the news.
	time.Sleep(1600 * time.Millisecond)
	agent.setHidden(true)
	tones := eval[int](agent, "window.__tones")
	_, tok1 := newUser(t)
	user1 := chatWithAgent(t, "user 1", tok1, 360, 740, "First user here", "Kim")
	agent.wait("a notification for the new conversation", `window.__notes.some((n) => n.title === "New conversation")`)
	user1.typeLine("#chat-input", "Anyone there?")
	agent.wait("a notification for the line", `window.__notes.some((n) => n.body === "Anyone there?")`)
	if n := eval[int](agent, "window.__tones"); n <= tones {
		t.Errorf("tones = %d, want more than %d: no sound for news in a hidden tab", n, tones)
	}

	agent.setHidden(false)
	cid1, _, _ := userConversation(t, tok1)
	agent.selectConv(cid1)
	notes := eval[int](agent, "window.__notes.length")
	user1.typeLine("#chat-input", "Looking at it now?")
	agent.waitLine("user", "Looking at it now?")
	if n := eval[int](agent, "window.__notes.length"); n != notes {
		t.Errorf("notifications = %d, want %d: a visible tab got a desktop notification", n, notes)
	}

	_, tok2 := newUser(t)
	user2 := chatWithAgent(t, "user 2", tok2, 360, 740, "Second user here", "Kim")
	cid2, _, _ := userConversation(t, tok2)
	agent.wait("both listed", fmt.Sprintf(`!!document.querySelector(%s) && !!document.querySelector(%s)`, js(conv(cid1)), js(conv(cid2))))

	selected := func() string {
		return eval[string](agent, `document.querySelector("#conv-list [aria-current=true]")?.dataset.cid || ""`)
	}
	alt := func(key string) {
		agent.do("Alt+"+key, chromedp.KeyEvent(key, chromedp.KeyModifiers(chromedp.ModifierAlt)))
	}
	// The newest activity is first: user 2's conversation, above user 1's (selected).
	alt(kb.ArrowUp)
	agent.wait("Alt+↑ selects the conversation above", fmt.Sprintf(`document.querySelector(%s).getAttribute("aria-current") === "true"`, js(conv(cid2))))
	alt(kb.ArrowDown)
	agent.wait("Alt+↓ selects the one below", fmt.Sprintf(`document.querySelector(%s).getAttribute("aria-current") === "true"`, js(conv(cid1))))
	if got := selected(); got != cid1 {
		t.Fatalf("selected %s, want %s", got, cid1)
	}
	agent.waitLine("user", "Looking at it now?") // the pane follows the selection

	agent.do("focus the composer", chromedp.Focus(chromedp.CSS("#chat-input")))
	alt("c")
	user1.wait("chat ended by Alt+C", `document.querySelector("#chat-status").dataset.status === "closed"`)
	if _, status, _ := userConversation(t, tok2); status != "open" {
		t.Errorf("user 2's conversation is %q after Alt+C on user 1's, want open", status)
	}
	if v := eval[string](agent, `document.querySelector("#chat-input").value`); v != "" {
		t.Errorf("Alt+C typed %q into the composer", v)
	}

	// The same console in a phone-sized window: the list, then a conversation.
	agent.selectConv(cid2)
	agent.do("narrow", chromedp.EmulateViewport(360, 740))
	agent.wait("the conversation fills the window", `document.querySelector("#app").dataset.view === "chat" && document.querySelector("#chat-back").offsetParent !== null`)
	agent.screenshot("console-conversation-360")
	if bad := agent.unlabelled(); len(bad) > 0 {
		t.Errorf("console (conversation, 360 px): controls without an accessible name: %v", bad)
	}
	agent.do("back to the list", chromedp.Click(chromedp.CSS("#chat-back")))
	agent.wait("the list shows", fmt.Sprintf(`document.querySelector(%s).offsetParent !== null`, js(conv(cid2))))
	agent.screenshot("console-list-360")
	if bad := agent.unlabelled(); len(bad) > 0 {
		t.Errorf("console (list, 360 px): controls without an accessible name: %v", bad)
	}
	for _, p := range []*page{agent, user1, user2} {
		if v := p.cspViolations(); len(v) > 0 {
			t.Errorf("%s: Content-Security-Policy violations: %v", p.name, v)
		}
	}
}
