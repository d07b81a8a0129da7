package clustertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app/auth"
)

func chatEnv(env []string) []string {
	return append(env, "PUSHDESK_CHAT_AGENT_GRACE=2s", "PUSHDESK_CHAT_SETTLE=200ms")
}

func dialAgent(tb testing.TB, in *instance, id uint64, name string) *client {
	tb.Helper()
	tok, err := auth.NewTokens(secret).Mint(auth.Identity{UID: id, Role: auth.RoleAgent, Name: name}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return dialToken(tb, in, tok)
}

func (c *client) write(tb testing.TB, s string) {
	tb.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		tb.Fatal(err)
	}
}

// waitFrame waits for a frame of type typ for which ok holds.
func (c *client) waitFrame(tb testing.TB, d time.Duration, typ string, ok func(map[string]any) bool) map[string]any {
	tb.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		f := c.next(time.Until(deadline))
		if f == nil {
			break
		}
		if f["type"] == typ && (ok == nil || ok(f)) {
			return f
		}
	}
	tb.Fatalf("no %s frame within %v", typ, d)
	return nil
}

func assignedTo(agent uint64) func(map[string]any) bool {
	return func(f map[string]any) bool {
		a, _ := f["agent"].(map[string]any)
		return a["id"] == fmt.Sprint(agent)
	}
}

// A user on one instance chats with an agent on another; when the
// agent's instance is killed, the conversation moves, with its history, to
// an agent on a third once the registry has swept the dead instance and
// the grace has passed.
func TestChatAcrossInstancesSurvivesAKilledAgentInstance(t *testing.T) {
	rds := startRedis(t)
	dsn := freshDatabase(t, "pushdesk_e2e_cluster_chat")
	i1 := startInstance(t, "c1", rds.url(), dsn, chatEnv)
	i2 := startInstance(t, "c2", rds.url(), dsn, chatEnv)
	i3 := startInstance(t, "c3", rds.url(), dsn, chatEnv)

	agentA, agentB, uid := newUID(), newUID(), newUID()
	a := dialAgent(t, i2, agentA, "Ann")
	time.Sleep(300 * time.Millisecond) // past the settle window
	u := dial(t, i1, uid)
	u.write(t, `{"type":"chat.send","text":"hello from c1","client_msg_id":"k1"}`)
	ack := u.waitFrame(t, 5*time.Second, "chat.ack", nil)
	conv := ack["conversation_id"].(string)
	u.waitFrame(t, 5*time.Second, "chat.assigned", assignedTo(agentA))
	a.waitFrame(t, 5*time.Second, "chat.assigned", func(f map[string]any) bool { return f["conversation_id"] == conv })
	a.waitFrame(t, 5*time.Second, "chat.msg", func(f map[string]any) bool { return f["text"] == "hello from c1" })
	a.write(t, fmt.Sprintf(`{"type":"chat.send","conversation_id":%q,"text":"hello from c2"}`, conv))
	u.waitFrame(t, 5*time.Second, "chat.msg", func(f map[string]any) bool { return f["text"] == "hello from c2" && f["from"] == "agent" })

	b := dialAgent(t, i3, agentB, "Bob")
	i2.kill() // kill -9: nothing of c2 says goodbye
	// The registry's alive key lapses (15 s), a survivor sweeps c2's
	// agents (every 5 s), and the 2 s grace passes.
	f := b.waitFrame(t, 45*time.Second, "chat.assigned", func(f map[string]any) bool { return f["conversation_id"] == conv })
	if f["conversation_id"] != conv {
		t.Fatalf("reassigned = %v", f)
	}
	for _, want := range []string{"hello from c1", "hello from c2"} {
		b.waitFrame(t, 5*time.Second, "chat.msg", func(f map[string]any) bool { return f["text"] == want && f["replay"] == true })
	}
	u.waitFrame(t, 5*time.Second, "chat.assigned", assignedTo(agentB))
	b.write(t, fmt.Sprintf(`{"type":"chat.send","conversation_id":%q,"text":"Bob here"}`, conv))
	u.waitFrame(t, 5*time.Second, "chat.msg", func(f map[string]any) bool { return f["text"] == "Bob here" })
}
