package handlers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app"
)

// Two devices of one user opening at once, made to overlap for certain:
// the first open is held inside the per-user lock (MySQL's conversations
// table is locked, so its insert waits), the second gets 416, and its
// retry once the first is through joins the same conversation.
// (TestChatRacingOpensMakeOneConversation races real opens, where a 416
// comes or not as timing has it.)
func TestChatRacingOpenGets416AndItsRetryJoins(t *testing.T) {
	d := newDesk(t)
	uid := newUID()
	first, second := d.user(uid), d.user(uid)
	ctx := context.Background()
	hold, err := testDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	if _, err := hold.ExecContext(ctx, "LOCK TABLES chat_conversations WRITE"); err != nil {
		t.Fatal(err)
	}
	unlock := func() {
		if _, err := hold.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
			t.Error(err)
		}
	}
	defer unlock() // again after the first: harmless
	first.send(`{"type":"chat.send","text":"from the phone","client_msg_id":"phone-1"}`)
	lockKey := d.srv.App.Cfg.Chat.KeyPrefix + "lock:" + fmt.Sprint(uid)
	rc := d.srv.App.Redis
	waitFor(t, "the first open inside its lock", func() bool {
		n, _ := rc.Do(ctx, rc.B().Exists().Key(lockKey).Build()).AsInt64()
		return n == 1
	})
	second.send(`{"type":"chat.send","text":"from the laptop","client_msg_id":"laptop-1"}`)
	if f := second.expectError(416); f.str("msg") != "Please try again" {
		t.Fatalf("loser's error = %v, want the contract's message", f)
	}
	unlock()
	conv := first.until("chat.ack").str("conversation_id")
	if conv == "" {
		t.Fatal("the first open got no conversation")
	}
	if ack := second.chatSend("", "from the laptop", "laptop-1"); ack.str("conversation_id") != conv {
		t.Fatalf("retry went to %s, want %s", ack.str("conversation_id"), conv)
	}
	if n := convRows(t, uid); n != 1 {
		t.Fatalf("conversations stored = %d, want 1", n)
	}
	var lines int
	if err := testDB.QueryRow("SELECT COUNT(*) FROM chat_lines WHERE conversation_id = ?", conv).Scan(&lines); err != nil || lines != 2 {
		t.Fatalf("lines = %d (%v), want both devices' lines once", lines, err)
	}
}

// After hello, a new connection gets the state again: a waiting user
// chat.queued with the position, an assigned user chat.assigned, and an
// agent a chat.assigned (with its history) for each conversation it holds.
func TestChatReconnectGetsTheStateAgain(t *testing.T) {
	d := newDesk(t, func(c *app.Config) { c.Chat.Capacity = 2 })
	agentID := newUID()
	ag := d.agent(agentID, "Held")
	time.Sleep(400 * time.Millisecond) // past the settle window
	held := map[string]string{}        // conversation → its line
	var users []uint64
	for i := range 3 {
		uid := newUID()
		users = append(users, uid)
		u := d.user(uid)
		text := fmt.Sprint("line of user ", i)
		conv := u.chatSend("", text, "r").str("conversation_id")
		if i < 2 {
			held[conv] = text
			u.until("chat.assigned")
		} else if q := u.until("chat.queued"); q.num("position") != 1 {
			t.Fatalf("third user = %v, want queued at 1 (capacity 2)", q)
		}
		u.conn.Close()
	}
	ag.conn.Close()

	again := d.agent(agentID, "Held")
	for range held {
		f := again.until("chat.assigned")
		text, ok := held[f.str("conversation_id")]
		if !ok {
			t.Fatalf("agent reconnected: assigned %v, want one of %v", f, held)
		}
		delete(held, f.str("conversation_id"))
		if m := again.until("chat.msg"); m.str("text") != text || m["replay"] != true {
			t.Fatalf("history = %v, want %q", m, text)
		}
	}
	if f := d.user(users[0]).until("chat.assigned"); agentOf(f) != fmt.Sprint(agentID) {
		t.Fatalf("assigned user reconnected: %v", f)
	}
	if f := d.user(users[2]).until("chat.queued"); f.num("position") != 1 {
		t.Fatalf("waiting user reconnected: %v, want chat.queued at 1", f)
	}
}
