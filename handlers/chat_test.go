package handlers

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app"
)

// A user who writes while no agent is online waits in the queue; the
// agent who then arrives gets the conversation with the lines written
// while it waited, and lines flow both ways.
func TestChatQueuedThenAssignedWithWaitingLines(t *testing.T) {
	d := newDesk(t)
	uid := newUID()
	u := d.user(uid)
	ack := u.chatSend("", "hello, anyone?", "c1")
	conv := ack.str("conversation_id")
	if conv == "" || ack.str("id") == "" || ack.str("client_msg_id") != "c1" {
		t.Fatalf("ack = %v", ack)
	}
	q := u.until("chat.queued")
	if q.str("conversation_id") != conv || q.num("position") != 1 {
		t.Fatalf("queued = %v, want position 1 of %s", q, conv)
	}
	u.chatSend(conv, "second line", "c2")

	agentID := newUID()
	ag := d.agent(agentID, "Ann")
	as := ag.until("chat.assigned")
	if as.str("conversation_id") != conv {
		t.Fatalf("agent assigned = %v, want %s", as, conv)
	}
	if user, _ := as["user"].(map[string]any); user["id"] != fmt.Sprint(uid) || user["online"] != true {
		t.Fatalf("assigned user = %v, want %d online", as["user"], uid)
	}
	for _, want := range []string{"hello, anyone?", "second line"} {
		m := ag.until("chat.msg")
		if m.str("text") != want || m["replay"] != true || m.str("from") != "user" {
			t.Fatalf("replayed line = %v, want %q", m, want)
		}
	}
	ua := u.until("chat.assigned")
	if agentOf(ua) != fmt.Sprint(agentID) || ua["agent"].(map[string]any)["name"] != "Ann" {
		t.Fatalf("user assigned = %v", ua)
	}

	ag.chatSend(conv, "hi, how can I help?", "")
	m := u.until("chat.msg")
	if m.str("text") != "hi, how can I help?" || m.str("from") != "agent" || m["replay"] == true {
		t.Fatalf("user got %v", m)
	}
	if m := ag.until("chat.msg"); m.str("text") != "hi, how can I help?" {
		t.Fatalf("agent's own line echoed as %v", m)
	}
	u.chatSend(conv, "my order is late", "c3")
	if m := ag.until("chat.msg"); m.str("text") != "my order is late" {
		t.Fatalf("agent got %v", m)
	}
	// The agent's console lists it with the unread lines; chat.read clears them.
	code, body := d.get("/api/v1/chat/conversations", agentToken(t, agentID, "Ann"))
	cs := body["conversations"].([]any)
	if code != 200 || len(cs) != 1 || cs[0].(map[string]any)["unread"].(float64) != 3 {
		t.Fatalf("agent list = %d %v, want one with 3 unread", code, body)
	}
	ag.send(fmt.Sprintf(`{"type":"chat.read","conversation_id":%q}`, conv))
	waitFor(t, "unread cleared", func() bool {
		_, body := d.get("/api/v1/chat/conversations", agentToken(t, agentID, "Ann"))
		return body["conversations"].([]any)[0].(map[string]any)["unread"].(float64) == 0
	})
	// History through REST, newest first, paged.
	code, page := d.get("/api/v1/chat/conversations/"+conv+"/messages?limit=2", mint(t, uid))
	msgs := page["messages"].([]any)
	if code != 200 || len(msgs) != 2 || msgs[0].(map[string]any)["text"] != "my order is late" || page["next"] == nil {
		t.Fatalf("history = %d %v", code, page)
	}
	_, page = d.get("/api/v1/chat/conversations/"+conv+"/messages?limit=2&before="+page["next"].(string), mint(t, uid))
	if msgs := page["messages"].([]any); len(msgs) != 2 || msgs[1].(map[string]any)["text"] != "hello, anyone?" || page["next"] != nil {
		t.Fatalf("second page = %v", page)
	}
}

func waitFor(tb testing.TB, what string, ok func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	tb.Fatalf("timed out waiting for %s", what)
}

// The same client_msg_id again gets the same ack and stores nothing.
func TestChatRepeatedClientMsgIDStoresOnce(t *testing.T) {
	d := newDesk(t)
	uid := newUID()
	u := d.user(uid)
	a1 := u.chatSend("", "once", "dup-1")
	a2 := u.chatSend("", "once", "dup-1")
	if a1.str("id") != a2.str("id") || a1.str("conversation_id") != a2.str("conversation_id") {
		t.Fatalf("acks differ: %v vs %v", a1, a2)
	}
	var n int
	if err := testDB.QueryRow("SELECT COUNT(*) FROM chat_lines WHERE conversation_id = ?", a1.str("conversation_id")).Scan(&n); err != nil || n != 1 {
		t.Fatalf("lines stored = %d (%v), want 1", n, err)
	}
	// Over REST too.
	code, ack := d.post("/api/v1/chat/messages", mint(t, uid), `{"text":"once","client_msg_id":"dup-1"}`)
	if code != 200 || ack["id"] != a1.str("id") {
		t.Fatalf("REST repeat = %d %v, want the first ack", code, ack)
	}
}

// Sticky: a returning user gets their previous agent while that agent is
// online, even when another is less loaded; not once it is offline.
func TestChatStickyOnlyWhileOnline(t *testing.T) {
	d := newDesk(t)
	a1, a2 := newUID(), newUID()
	ag1 := d.agent(a1, "One")
	uid := newUID()
	u := d.user(uid)
	conv := u.chatSend("", "first visit", "s1").str("conversation_id")
	if agentOf(u.until("chat.assigned")) != fmt.Sprint(a1) {
		t.Fatal("first visit not given to the only agent")
	}
	ag1.until("chat.assigned")
	// Load a1 with another user (before a2 comes), so that a2 is less
	// loaded: least loaded would choose a2, only sticky a1.
	other := d.user(newUID())
	other.chatSend("", "x", "o1")
	if got := agentOf(other.until("chat.assigned")); got != fmt.Sprint(a1) {
		t.Fatalf("other user went to %s, want %d", got, a1)
	}
	ag2 := d.agent(a2, "Two")
	time.Sleep(400 * time.Millisecond) // past the settle window a2 opened
	u.send(fmt.Sprintf(`{"type":"chat.close","conversation_id":%q}`, conv))
	u.until("chat.closed")

	conv2 := u.chatSend("", "second visit", "s2").str("conversation_id")
	if conv2 == conv {
		t.Fatal("a closed conversation was reused")
	}
	if got := agentOf(u.until("chat.assigned")); got != fmt.Sprint(a1) {
		t.Fatalf("second visit went to %s, want sticky %d (load 1, %d has 0)", got, a1, a2)
	}
	var reason string
	if err := testDB.QueryRow("SELECT reason FROM chat_holds WHERE conversation_id = ?", conv2).Scan(&reason); err != nil || reason != "sticky" {
		t.Fatalf("hand-out reason = %q (%v), want sticky", reason, err)
	}
	u.send(fmt.Sprintf(`{"type":"chat.close","conversation_id":%q}`, conv2))
	u.until("chat.closed")

	ag1.conn.Close()
	d.waitAgents(t, a2)
	u.chatSend("", "third visit", "s3")
	if got := agentOf(u.until("chat.assigned")); got != fmt.Sprint(a2) {
		t.Fatalf("third visit went to %s, want %d (the previous agent is offline)", got, a2)
	}
	ag2.until("chat.assigned")
}

// Least loaded: four users over two agents make two and two.
func TestChatLeastLoadedSplitsEvenly(t *testing.T) {
	d := newDesk(t)
	a1, a2 := newUID(), newUID()
	d.agent(a1, "One")
	d.agent(a2, "Two")
	time.Sleep(400 * time.Millisecond) // past the settle window
	count := map[string]int{}
	for i := range 4 {
		u := d.user(newUID())
		u.chatSend("", "hi", fmt.Sprint("l", i))
		count[agentOf(u.until("chat.assigned"))]++
	}
	if count[fmt.Sprint(a1)] != 2 || count[fmt.Sprint(a2)] != 2 {
		t.Fatalf("assignments = %v, want 2 and 2", count)
	}
}

// Two devices of one user opening at once make one conversation; a loser
// gets 416 and its retry joins the same conversation.
func TestChatRacingOpensMakeOneConversation(t *testing.T) {
	d := newDesk(t)
	uid := newUID()
	const devices = 6
	conns := make([]*wsClient, devices)
	for i := range conns {
		conns[i] = d.user(uid)
	}
	var wg sync.WaitGroup
	convs := make([]string, devices)
	lost := make([]bool, devices)
	for i, c := range conns {
		wg.Go(func() {
			c.send(fmt.Sprintf(`{"type":"chat.send","text":"race %d","client_msg_id":"r%d"}`, i, i))
			for {
				f := c.next()
				if f.str("type") == "chat.ack" && f.str("client_msg_id") == fmt.Sprint("r", i) {
					convs[i] = f.str("conversation_id")
					return
				}
				if f.str("type") == "error" {
					if f.num("code") != 416 {
						t.Errorf("device %d: error %v, want only 416", i, f)
						return
					}
					lost[i] = true
					// Back off as pushdesk.js does (200 ms and more): a
					// retry at once, while the other open still runs,
					// gets 416 again and spends the user's line budget.
					time.Sleep(200 * time.Millisecond)
					c.send(fmt.Sprintf(`{"type":"chat.send","text":"race %d","client_msg_id":"r%d"}`, i, i))
				}
			}
		})
	}
	wg.Wait()
	for i := range convs {
		if convs[i] != convs[0] || convs[i] == "" {
			t.Fatalf("conversations = %v, want one", convs)
		}
	}
	if n := convRows(t, uid); n != 1 {
		t.Fatalf("conversations stored = %d, want 1", n)
	}
	t.Logf("devices that got 416 and retried: %v", lost)
}

// Six waiting conversations and two agents arriving together: three each.
func TestChatBacklogSplitsAmongAgentsArrivingTogether(t *testing.T) {
	d := newDesk(t, func(c *app.Config) { c.Chat.Settle = time.Second })
	users := make([]*wsClient, 6)
	for i := range users {
		users[i] = d.user(newUID())
		users[i].chatSend("", fmt.Sprint("waiting ", i), fmt.Sprint("w", i))
		if q := users[i].until("chat.queued"); q.num("position") != int64(i+1) {
			t.Fatalf("user %d queued at %v, want %d", i, q["position"], i+1)
		}
	}
	a1, a2 := newUID(), newUID()
	d.agent(a1, "One")
	time.Sleep(200 * time.Millisecond) // inside the settle window
	d.agent(a2, "Two")
	count := map[string]int{}
	for i, u := range users {
		f := u.until("chat.assigned")
		count[agentOf(f)]++
		_ = i
	}
	if count[fmt.Sprint(a1)] != 3 || count[fmt.Sprint(a2)] != 3 {
		t.Fatalf("backlog split = %v, want 3 and 3", count)
	}
	var reasons string
	if err := testDB.QueryRow(`SELECT GROUP_CONCAT(DISTINCT reason) FROM chat_holds WHERE agent_id IN (?, ?)`, a1, a2).Scan(&reasons); err != nil || reasons != "backlog" {
		t.Fatalf("hand-out reasons = %q (%v), want backlog", reasons, err)
	}
}

// Waiting users are told when their position moves.
func TestChatQueuePositionMoves(t *testing.T) {
	d := newDesk(t, func(c *app.Config) { c.Chat.Capacity = 1 })
	u1, u2 := d.user(newUID()), d.user(newUID())
	u1.chatSend("", "first", "p1")
	u1.until("chat.queued")
	u2.chatSend("", "second", "p2")
	if q := u2.until("chat.queued"); q.num("position") != 2 {
		t.Fatalf("second user position = %v, want 2", q["position"])
	}
	d.agent(newUID(), "Solo")
	u1.until("chat.assigned")
	if q := u2.until("chat.queued"); q.num("position") != 1 {
		t.Fatalf("moved position = %v, want 1", q["position"])
	}
}

// An agent whose last connection goes keeps its conversations through
// the grace (a reload changes nothing); after it, they move to another
// agent, who gets the history.
func TestChatAgentGoneReassignedAfterGrace(t *testing.T) {
	d := newDesk(t)
	a1, a2 := newUID(), newUID()
	ag1 := d.agent(a1, "Leaver")
	uid := newUID()
	u := d.user(uid)
	conv := u.chatSend("", "help me", "g1").str("conversation_id")
	u.until("chat.assigned")
	ag1.until("chat.assigned")
	ag1.chatSend(conv, "on it", "")
	ag1.conn.Close()
	ag2 := d.agent(a2, "Stayer")
	// A reload inside the grace: the same agent is back and still holds it.
	time.Sleep(300 * time.Millisecond)
	reload := d.agent(a1, "Leaver")
	if f := reload.until("chat.assigned"); f.str("conversation_id") != conv {
		t.Fatalf("after reload = %v, want %s", f, conv)
	}
	reload.conn.Close()
	d.waitAgents(t, a2)
	d.srv.App.Clock.Advance(20 * time.Second) // not yet past the 30 s grace
	time.Sleep(500 * time.Millisecond)        // five ticks of the loop
	var holder uint64
	if err := testDB.QueryRow("SELECT agent_id FROM chat_conversations WHERE id = ?", conv).Scan(&holder); err != nil || holder != a1 {
		t.Fatalf("inside the grace the holder is %d (%v), want %d", holder, err, a1)
	}
	d.srv.App.Clock.Advance(11 * time.Second)
	f := ag2.until("chat.assigned")
	if f.str("conversation_id") != conv {
		t.Fatalf("reassigned = %v, want %s", f, conv)
	}
	for _, want := range []string{"help me", "on it"} {
		if m := ag2.until("chat.msg"); m.str("text") != want || m["replay"] != true {
			t.Fatalf("history line = %v, want %q", m, want)
		}
	}
	if got := agentOf(u.until("chat.assigned")); got != fmt.Sprint(a2) {
		t.Fatalf("user told agent %s, want %d", got, a2)
	}
	var reason string
	if err := testDB.QueryRow("SELECT reason FROM chat_holds WHERE conversation_id = ? AND agent_id = ?", conv, a2).Scan(&reason); err != nil || reason != "reassign" {
		t.Fatalf("hold reason = %q (%v)", reason, err)
	}
}

// With no other agent, a gone agent's conversations go back to waiting.
func TestChatAgentGoneWithNobodyElseRequeues(t *testing.T) {
	d := newDesk(t)
	ag := d.agent(newUID(), "Only")
	u := d.user(newUID())
	conv := u.chatSend("", "hello", "n1").str("conversation_id")
	u.until("chat.assigned")
	ag.conn.Close()
	d.waitAgents(t)
	d.srv.App.Clock.Advance(31 * time.Second)
	if q := u.until("chat.queued"); q.str("conversation_id") != conv || q.num("position") != 1 {
		t.Fatalf("queued = %v", q)
	}
	next := d.agent(newUID(), "Next")
	if f := next.until("chat.assigned"); f.str("conversation_id") != conv {
		t.Fatalf("next agent got %v", f)
	}
}

// Transfer: the old agent is told and can no longer write; the new one
// gets the history; the user learns the new agent.
func TestChatTransfer(t *testing.T) {
	d := newDesk(t)
	a1, a2 := newUID(), newUID()
	ag1 := d.agent(a1, "From")
	u := d.user(newUID())
	conv := u.chatSend("", "question", "t1").str("conversation_id")
	u.until("chat.assigned")
	ag1.until("chat.assigned")
	ag2 := d.agent(a2, "To")
	ag1.send(fmt.Sprintf(`{"type":"chat.transfer","conversation_id":%q,"to_agent":"%d"}`, conv, newUID()))
	ag1.expectError(409) // nobody by that id is online
	ag1.send(fmt.Sprintf(`{"type":"chat.transfer","conversation_id":%q,"to_agent":"%d"}`, conv, a2))
	if f := ag1.until("chat.transferred"); f.str("conversation_id") != conv || f.str("to_agent") != fmt.Sprint(a2) {
		t.Fatalf("transferred = %v", f)
	}
	if f := ag2.until("chat.assigned"); f.str("conversation_id") != conv {
		t.Fatalf("new agent got %v", f)
	}
	if m := ag2.until("chat.msg"); m.str("text") != "question" || m["replay"] != true {
		t.Fatalf("history = %v", m)
	}
	if got := agentOf(u.until("chat.assigned")); got != fmt.Sprint(a2) {
		t.Fatalf("user told %s", got)
	}
	ag1.send(fmt.Sprintf(`{"type":"chat.send","conversation_id":%q,"text":"still here?"}`, conv))
	ag1.expectError(403)
	// The old agent may still read what it held.
	if code, _ := d.get("/api/v1/chat/conversations/"+conv+"/messages", agentToken(t, a1, "From")); code != 200 {
		t.Fatalf("old agent history = %d", code)
	}
}

// Either side may close; both are told, and the conversation takes no
// more lines.
func TestChatCloseByEitherSide(t *testing.T) {
	d := newDesk(t)
	ag := d.agent(newUID(), "Closer")
	for _, byAgent := range []bool{false, true} {
		u := d.user(newUID())
		conv := u.chatSend("", "bye soon", "x").str("conversation_id")
		u.until("chat.assigned")
		ag.until("chat.assigned")
		closer := u
		if byAgent {
			closer = ag
		}
		closer.send(fmt.Sprintf(`{"type":"chat.close","conversation_id":%q}`, conv))
		if f := u.until("chat.closed"); f.str("conversation_id") != conv {
			t.Fatalf("user closed = %v", f)
		}
		if f := ag.until("chat.closed"); f.str("conversation_id") != conv {
			t.Fatalf("agent closed = %v", f)
		}
		ag.send(fmt.Sprintf(`{"type":"chat.send","conversation_id":%q,"text":"hello?"}`, conv))
		ag.expectError(409)
		var status string
		if err := testDB.QueryRow("SELECT status FROM chat_conversations WHERE id = ?", conv).Scan(&status); err != nil || status != "closed" {
			t.Fatalf("stored status = %q (%v)", status, err)
		}
	}
}

// A reply to a user with no open connection lands in their inbox as a
// notification of kind chat, counted and replayed when they come back.
func TestChatReplyToOfflineUserLandsInInbox(t *testing.T) {
	d := newDesk(t)
	ag := d.agent(newUID(), "Replier")
	uid := newUID()
	u := d.user(uid)
	conv := u.chatSend("", "call me back", "i1").str("conversation_id")
	u.until("chat.assigned")
	ag.until("chat.assigned")
	u.conn.Close()
	if f := ag.until("chat.presence"); f["user"].(map[string]any)["online"] != false {
		t.Fatalf("presence = %v, want offline", f)
	}
	ag.chatSend(conv, "we fixed it", "")
	waitFor(t, "the reply in the inbox", func() bool {
		_, body := d.get("/api/v1/me/unread", mint(t, uid))
		byKind, _ := body["by_kind"].(map[string]any)
		return byKind["chat"] == float64(1)
	})
	back := d.dialTok(mint(t, uid))
	m := back.until("msg")
	body, _ := m["body"].(map[string]any)
	if m.str("kind") != "chat" || body["text"] != "we fixed it" || body["conversation_id"] != conv || m["replay"] != true {
		t.Fatalf("replayed notification = %v", m)
	}
	if f := back.until("chat.assigned"); f.str("conversation_id") != conv {
		t.Fatalf("state after reconnect = %v", f)
	}
}

// An away agent gets no new conversation; back online, it takes the
// backlog.
func TestChatAwayAgentGetsNothingNew(t *testing.T) {
	d := newDesk(t)
	ag := d.agent(newUID(), "Breaker")
	ag.send(`{"type":"agent.status","status":"away"}`)
	if f := ag.until("agent.status"); f.str("status") != "away" {
		t.Fatalf("status = %v", f)
	}
	u := d.user(newUID())
	conv := u.chatSend("", "anyone?", "a1").str("conversation_id")
	u.until("chat.queued")
	ag.send(`{"type":"agent.status","status":"online"}`)
	if f := ag.until("chat.assigned"); f.str("conversation_id") != conv {
		t.Fatalf("after coming back = %v", f)
	}
}

// waitAgents waits until exactly the agents ids are connected.
func (d *desk) waitAgents(tb testing.TB, ids ...uint64) {
	tb.Helper()
	want := fmt.Sprint(ids)
	waitFor(tb, "agents "+want, func() bool {
		_, body := d.get("/api/v1/chat/agents", agentToken(tb, 1, "probe"))
		var got []uint64
		for _, a := range body["agents"].([]any) {
			var id uint64
			fmt.Sscan(a.(map[string]any)["id"].(string), &id)
			got = append(got, id)
		}
		return fmt.Sprint(got) == want || (len(ids) == 0 && len(got) == 0)
	})
}
