package handlers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app"
)

// Bad chat input gets the contract's error frames and stores nothing.
func TestChatBadInput(t *testing.T) {
	d := newDesk(t, func(c *app.Config) { c.Chat.Rate = 5 })
	// Lines count in fixed 10 s windows: start the desk's clock at the
	// start of one, so that all of this test's lines fall in it (a window
	// that began between the first line and the sixth let the sixth pass).
	ms := d.srv.App.Clock.Now().UnixMilli()
	d.srv.App.Clock.Advance(time.Duration(10_000-ms%10_000) * time.Millisecond)
	owner, stranger := newUID(), newUID()
	ag := d.agent(newUID(), "Guard")
	u := d.user(owner)
	conv := u.chatSend("", "mine", "b0").str("conversation_id")
	ag.until("chat.assigned")
	other := d.agent(newUID(), "Other")
	s := d.user(stranger)
	cases := []struct {
		name  string
		c     *wsClient
		frame string
		code  int64
	}{
		{"empty text", u, `{"type":"chat.send","text":"   "}`, 400},
		{"text over 4 KiB", u, fmt.Sprintf(`{"type":"chat.send","text":%q}`, strings.Repeat("x", 4097)), 400},
		{"long client_msg_id", u, fmt.Sprintf(`{"type":"chat.send","text":"a","client_msg_id":%q}`, strings.Repeat("k", 65)), 400},
		{"user names another's conversation", s, fmt.Sprintf(`{"type":"chat.send","conversation_id":%q,"text":"hi"}`, conv), 403},
		{"user closes another's conversation", s, fmt.Sprintf(`{"type":"chat.close","conversation_id":%q}`, conv), 403},
		{"user transfers", u, fmt.Sprintf(`{"type":"chat.transfer","conversation_id":%q,"to_agent":"1"}`, conv), 403},
		{"user sets agent status", u, `{"type":"agent.status","status":"away"}`, 403},
		{"agent writes into another's conversation", other, fmt.Sprintf(`{"type":"chat.send","conversation_id":%q,"text":"hi"}`, conv), 403},
		{"unknown conversation", ag, `{"type":"chat.send","conversation_id":"12345","text":"hi"}`, 404},
		{"bad status", ag, `{"type":"agent.status","status":"asleep"}`, 400},
		{"not JSON fields", u, `{"type":"chat.send","text":5}`, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.tb = t
			tc.c.send(tc.frame)
			tc.c.expectError(tc.code)
		})
	}
	var n int
	if err := testDB.QueryRow("SELECT COUNT(*) FROM chat_lines WHERE conversation_id = ?", conv).Scan(&n); err != nil || n != 1 {
		t.Fatalf("lines = %d (%v), want only the first", n, err)
	}
	if n := convRows(t, stranger); n != 0 {
		t.Fatalf("the stranger got %d conversations", n)
	}
	u.tb = t
	// 5 lines per 10 s: the first took one.
	for i := range 4 {
		u.chatSend(conv, fmt.Sprint("line ", i), fmt.Sprint("rate", i))
	}
	u.send(`{"type":"chat.send","text":"one too many","client_msg_id":"rate-x"}`)
	u.expectError(429)
	// REST: strangers cannot read, unknown is 404, users cannot list agents.
	if code, _ := d.get("/api/v1/chat/conversations/"+conv+"/messages", mint(t, stranger)); code != 403 {
		t.Fatalf("stranger history = %d, want 403", code)
	}
	if code, _ := d.get("/api/v1/chat/conversations/999/messages", mint(t, owner)); code != 404 {
		t.Fatalf("unknown history = %d, want 404", code)
	}
	if code, _ := d.get("/api/v1/chat/agents", mint(t, owner)); code != 403 {
		t.Fatalf("user agents list = %d, want 403", code)
	}
	if code, _ := d.post("/api/v1/chat/messages", mint(t, stranger), `{"text":""}`); code != 400 {
		t.Fatalf("REST empty text = %d, want 400", code)
	}
}
