package browsertest

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestChatFromQueueToTransferAndClose walks one conversation through the
// console and the demo page: the user waits while the only agent is away,
// the agent comes back and gets it, they talk, the agent hands it to a
// second agent, and the second one closes it.
func TestChatFromQueueToTransferAndClose(t *testing.T) {
	stamp := newUID()
	aliceID, alicePW := addAgent(t, fmt.Sprintf("alice-%d@example.com", stamp), "Alice")
	_, bobPW := addAgent(t, fmt.Sprintf("bob-%d@example.com", stamp), "Bob")

	alice := newPage(t, "alice", 1440, 900)
	alice.login(fmt.Sprintf("alice-%d@example.com", stamp), alicePW)
	if got := eval[string](alice, `document.querySelector("#agent-name").textContent`); got != "Alice" {
		t.Fatalf("agent name = %q, want Alice", got)
	}
	alice.do("go away", chromedp.Click(chromedp.CSS("#status-toggle")))
	alice.wait("away", `document.querySelector("#status-toggle").dataset.status === "away"`)

	uid := newUID()
	utok := token(t, uid, "", "")
	closeLeftovers(t, utok)
	user := newPage(t, "user", 360, 740)
	user.open("/demo/?token=" + utok)
	user.waitOpen()
	if eval[bool](user, `location.search.includes("token=")`) {
		t.Fatal("the token stays in the address bar")
	}
	user.do("open chat", chromedp.Click(chromedp.CSS("#chat-open")))
	user.typeLine("#chat-input", "Hello, my order is late")
	user.waitLine("user", "Hello, my order is late")
	user.wait("queued", `document.querySelector("#chat-status").dataset.status === "waiting" && document.querySelector("#chat-position").textContent.trim() === "1"`)
	cid, status, _ := userConversation(t, utok)
	if status != "waiting" {
		t.Fatalf("conversation %s is %q, want waiting while the only agent is away", cid, status)
	}

	alice.wait("the waiting conversation listed", fmt.Sprintf(`document.querySelector(%s)?.dataset.status === "waiting"`, js(conv(cid))))
	alice.screenshot("console-queue")
	user.screenshot("demo-chat-waiting")

	alice.do("come back", chromedp.Click(chromedp.CSS("#status-toggle")))
	alice.wait("online", `document.querySelector("#status-toggle").dataset.status === "online"`)
	user.wait("assigned to Alice", `document.querySelector("#chat-status").dataset.status === "open" && document.querySelector("#chat-agent").textContent.trim() === "Alice"`)
	alice.wait("assigned in the list", fmt.Sprintf(`document.querySelector(%s)?.dataset.status === "open"`, js(conv(cid))))
	alice.selectConv(cid)
	alice.waitLine("user", "Hello, my order is late")
	alice.wait("user shown online", `document.querySelector("#user-presence").textContent.trim() === "online"`)
	alice.typeLine("#chat-input", "Hi, Alice here. Let me look.")
	alice.waitLine("agent", "Hi, Alice here. Let me look.")
	user.waitLine("agent", "Hi, Alice here. Let me look.")
	user.typeLine("#chat-input", "Order 1234")
	alice.waitLine("user", "Order 1234")
	alice.screenshot("console-conversation")
	user.screenshot("demo-chat-open")

	bob := newPage(t, "bob", 1440, 900)
	bob.login(fmt.Sprintf("bob-%d@example.com", stamp), bobPW)
	alice.wait("Bob in the transfer list", `[...document.querySelectorAll("#transfer-select option")].some((o) => o.textContent.includes("Bob"))`)
	bobID := eval[string](alice, `[...document.querySelectorAll("#transfer-select option")].find((o) => o.textContent.includes("Bob")).value`)
	if bobID == aliceID {
		t.Fatal("the transfer list offers Alice to herself")
	}
	alice.do("pick Bob", chromedp.SetValue(chromedp.CSS("#transfer-select"), bobID))
	alice.do("transfer", chromedp.Click(chromedp.CSS("#transfer-btn")))
	user.wait("now with Bob", `document.querySelector("#chat-agent").textContent.trim() === "Bob"`)
	alice.wait("Alice may no longer write", `document.querySelector("#chat-pane").dataset.readonly === "true" || !document.querySelector(`+js(conv(cid))+`)`)
	bob.selectConv(cid)
	bob.waitLine("user", "Order 1234") // the history came along
	bob.waitLine("agent", "Hi, Alice here. Let me look.")
	bob.typeLine("#chat-input", "Bob here, it ships today.")
	user.waitLine("agent", "Bob here, it ships today.")

	bob.do("close", chromedp.Click(chromedp.CSS("#chat-close")))
	user.wait("chat ended", `document.querySelector("#chat-status").dataset.status === "closed"`)
	if _, status, _ := userConversation(t, utok); status != "" {
		t.Fatalf("after close the user still has a %s conversation", status)
	}
	for _, line := range []string{"Hello, my order is late", "Hi, Alice here. Let me look.", "Order 1234", "Bob here, it ships today."} {
		if n := user.lines(line); n != 1 {
			t.Errorf("user page shows %q %d times, want once", line, n)
		}
	}
	for _, p := range []*page{alice, bob, user} {
		if v := p.cspViolations(); len(v) > 0 {
			t.Errorf("%s: Content-Security-Policy violations: %v", p.name, v)
		}
	}
}
