package chat

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// These tests break one dependency at a time — a MySQL table, the answer
// of one script, one push — on real servers, and check that what Redis
// says (the live truth), what MySQL says and what clients were told
// still agree, or are made to agree by the loop.

// newBrokenDB returns a database of the test's own holding the chat
// tables, for tests that break MySQL; it is dropped after.
func newBrokenDB(tb testing.TB) *models.ChatRepo {
	tb.Helper()
	ctx := context.Background()
	main, err := mysql.ParseDSN(testDSN)
	if err != nil {
		tb.Fatal(err)
	}
	db, err := models.Open(ctx, testsvc.Database(tb, "pushdesk_chat_broken"), 4)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() }) // before the database is dropped
	for _, t := range []string{"chat_conversations", "chat_lines", "chat_holds", "chat_agents"} {
		if _, err := db.ExecContext(ctx, fmt.Sprintf("CREATE TABLE `%s` LIKE `%s`.`%s`", t, main.DBName, t)); err != nil {
			tb.Fatal(err)
		}
	}
	return &models.ChatRepo{DB: db}
}

// lossyRedis is the real Redis, but for the answers of one script:
// "lost" runs it and answers a timeout, "never" answers a timeout
// without running it, "refused" has Redis answer an error instead.
type lossyRedis struct {
	rueidis.Client
	sha string
	mu  sync.Mutex
	how string
}

func scriptSHA(name string) string {
	lib, _ := luaFS.ReadFile("lua/lib.lua")
	src, _ := luaFS.ReadFile("lua/" + name + ".lua")
	sum := sha1.Sum([]byte(string(lib) + "\n" + string(src)))
	return hex.EncodeToString(sum[:])
}

func (c *lossyRedis) set(how string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.how = how
}

func (c *lossyRedis) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	args := cmd.Commands()
	ours := len(args) > 1 && ((args[0] == "EVALSHA" && args[1] == c.sha) ||
		(args[0] == "EVAL" && fmt.Sprintf("%x", sha1.Sum([]byte(args[1]))) == c.sha))
	c.mu.Lock()
	how := c.how
	c.mu.Unlock()
	if !ours || how == "" {
		return c.Client.Do(ctx, cmd)
	}
	switch how {
	case "lost":
		res := c.Client.Do(ctx, cmd)
		if e, ok := rueidis.IsRedisErr(res.Error()); ok && e.IsNoScript() {
			return res // not run: Exec sends the script itself next
		}
	case "refused":
		return c.Client.Do(ctx, c.Client.B().Eval().Script("return redis.error_reply('ERR refused by the test')").Numkeys(0).Build())
	}
	return rueidis.NewErrorResult(context.DeadlineExceeded)
}

// failingPusher fails the next fails pushes to uid (the rest are
// recorded).
type failingPusher struct {
	*recorder
	mu    sync.Mutex
	uid   uint64
	fails int
}

func (p *failingPusher) PushToUser(ctx context.Context, uid uint64, frames ...hub.Frame) error {
	p.mu.Lock()
	fail := uid == p.uid && p.fails > 0
	if fail {
		p.fails--
	}
	p.mu.Unlock()
	if fail {
		return fmt.Errorf("publish: %w", context.DeadlineExceeded)
	}
	return p.recorder.PushToUser(ctx, uid, frames...)
}

// newServiceWith is newTestService (its key prefix, clock and recorder)
// with the dependencies change replaces.
func newServiceWith(tb testing.TB, cfg Config, change func(*Params)) (*Service, *recorder) {
	tb.Helper()
	base, rec, clock := newTestService(tb, cfg)
	p := Params{Config: base.cfg, Redis: testRC, Repo: testRepo, Push: rec, Inbox: rec, Presence: rec, Instances: rec,
		NewID: func() uint64 { return ids.Add(1) }, Instance: "test", Clock: clock}
	change(&p)
	return New(p), rec
}

func connectAgent(tb testing.TB, s *Service, agent uint64) {
	tb.Helper()
	if err := s.AgentConnected(context.Background(), Sender{ID: agent, Agent: true, Name: "A"}, nil); err != nil {
		tb.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past the settle window
}

// open.lua runs but its answer is lost to a timeout: the conversation
// Redis now has keeps its MySQL row, and the send goes on from what
// Redis says. Before, the row was deleted and the conversation lived in
// Redis alone.
func TestOpenWhoseAnswerIsLostGoesOn(t *testing.T) {
	rc := &lossyRedis{Client: testRC, sha: scriptSHA("open")}
	s, rec := newServiceWith(t, Config{Settle: time.Millisecond}, func(p *Params) { p.Redis = rc })
	ctx := context.Background()
	agent, uid := ids.Add(1), ids.Add(1)
	connectAgent(t, s, agent)
	rc.set("lost")
	ack, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "hello", ClientMsgID: "lost-1"})
	rc.set("")
	if err != nil {
		t.Fatalf("Send with open's answer lost = %v, want the line stored", err)
	}
	cur, _ := testRC.Do(ctx, testRC.B().Get().Key(s.k.user(utoa(uid))).Build()).ToString()
	if cur != ack.ConversationID {
		t.Fatalf("Redis has conversation %q, the ack %q", cur, ack.ConversationID)
	}
	c, err := testRepo.GetConversation(ctx, parseU(cur))
	if err != nil {
		t.Fatalf("MySQL row of the live conversation: %v", err)
	}
	if c.Status != models.ConvOpen || c.AgentID == nil || *c.AgentID != agent || c.LastLineID == 0 {
		t.Fatalf("MySQL row = %+v, want open, held by %d, with the line", c, agent)
	}
	if got := rec.types(uid); !slices.Contains(got, "chat.assigned") {
		t.Fatalf("user got %v, want chat.assigned", got)
	}
	if got := rec.types(AgentKey(agent)); !slices.Contains(got, "chat.assigned") {
		t.Fatalf("agent got %v, want chat.assigned", got)
	}
}

// A refusal Redis answered means open.lua never ran: the row goes, and
// nothing is left anywhere. A timeout before it ran leaves the row
// (the script might still run), which the loop's repair drops later.
func TestOpenThatNeverRanLeavesNothingForLong(t *testing.T) {
	for _, how := range []string{"refused", "never"} {
		t.Run(how, func(t *testing.T) {
			rc := &lossyRedis{Client: testRC, sha: scriptSHA("open")}
			repo := newBrokenDB(t) // the repair below sees only this test's rows
			s, rec := newServiceWith(t, Config{}, func(p *Params) { p.Redis, p.Repo = rc, repo })
			ctx := context.Background()
			uid := ids.Add(1)
			rc.set(how)
			_, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "anyone?"})
			rc.set("")
			if e, ok := AsError(err); !ok || e.Code != 503 {
				t.Fatalf("Send = %v, want a 503", err)
			}
			if n, _ := testRC.Do(ctx, testRC.B().Exists().Key(s.k.user(utoa(uid))).Build()).AsInt64(); n != 0 {
				t.Fatal("Redis has a conversation")
			}
			if got := rec.types(uid); len(got) != 0 {
				t.Fatalf("user was told %v", got)
			}
			cs, _ := repo.UserConversations(ctx, uid, 10)
			if want := map[string]int{"refused": 0, "never": 1}[how]; len(cs) != want {
				t.Fatalf("MySQL rows = %d, want %d", len(cs), want)
			}
			if how == "never" {
				testRC.Do(ctx, testRC.B().Set().Key(s.k.built()).Value("1").Build())
				s.clock.(*offsetClock).off.Store(int64(2 * orphanAge))
				s.reconcile(ctx)
				if cs, _ := repo.UserConversations(ctx, uid, 10); len(cs) != 0 {
					t.Fatalf("MySQL rows after the repair = %+v, want none", cs)
				}
			}
		})
	}
}

// MySQL failing to record an assignment does not undo it (Redis has
// it): the send goes through, both sides are told, and the loop's repair
// records it later, once, with its own reason.
func TestFailedRecordOfAnAssignmentIsRepaired(t *testing.T) {
	repo := newBrokenDB(t)
	s, rec := newServiceWith(t, Config{Settle: time.Millisecond}, func(p *Params) { p.Repo = repo })
	ctx := context.Background()
	agent, uid := ids.Add(1), ids.Add(1)
	connectAgent(t, s, agent)
	if _, err := repo.DB.ExecContext(ctx, "RENAME TABLE chat_holds TO chat_holds_away"); err != nil {
		t.Fatal(err)
	}
	ack, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "help", ClientMsgID: "rec-1"})
	if err != nil {
		t.Fatalf("Send while assignments cannot be recorded = %v, want the line stored", err)
	}
	if got := rec.types(AgentKey(agent)); !slices.Contains(got, "chat.assigned") {
		t.Fatalf("agent got %v, want chat.assigned", got)
	}
	cid := parseU(ack.ConversationID)
	if c, err := repo.GetConversation(ctx, cid); err != nil || c.Status != models.ConvWaiting {
		t.Fatalf("MySQL row = %+v, %v; want it still waiting (the record failed)", c, err)
	}
	if _, err := repo.DB.ExecContext(ctx, "RENAME TABLE chat_holds_away TO chat_holds"); err != nil {
		t.Fatal(err)
	}
	testRC.Do(ctx, testRC.B().Set().Key(s.k.built()).Value("1").Build())
	s.reconcile(ctx)
	if c, _ := repo.GetConversation(ctx, cid); c.Status != models.ConvWaiting {
		t.Fatalf("MySQL row = %+v; want a hand-out this young left to its own record", c)
	}
	s.clock.(*offsetClock).off.Store(int64(2 * recordAge))
	s.reconcile(ctx)
	s.reconcile(ctx) // twice: nothing more
	c, err := repo.GetConversation(ctx, cid)
	if err != nil || c.Status != models.ConvOpen || c.AgentID == nil || *c.AgentID != agent {
		t.Fatalf("MySQL row after the repair = %+v, %v; want open, held by %d", c, err, agent)
	}
	var reasons []string
	if err := repo.DB.NewSelect().Table("chat_holds").Column("reason").Where("conversation_id = ?", cid).Scan(ctx, &reasons); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(reasons, []string{ReasonLeastLoaded}) {
		t.Fatalf("holds = %v, want one %s", reasons, ReasonLeastLoaded)
	}
}

// Every disagreement the repair meets, against a row of each kind.
func TestRepairMakesMySQLSayWhatRedisSays(t *testing.T) {
	repo := newBrokenDB(t)
	s, rec := newServiceWith(t, Config{Settle: time.Millisecond}, func(p *Params) { p.Repo = repo })
	ctx := context.Background()
	agent := ids.Add(1)
	connectAgent(t, s, agent)
	old := time.Now().Add(-2 * orphanAge)
	row := func(status string, agent *uint64, line uint64) uint64 {
		c := &models.Conversation{ID: ids.Add(1), UserID: ids.Add(1), Status: status, AgentID: agent, OpenedAt: old, LastMsgAt: old, LastLineID: line}
		if err := repo.CreateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	orphan := row(models.ConvWaiting, nil, 0)   // an open that never went live
	closed := row(models.ConvOpen, &agent, 7)   // closed in Redis, not in MySQL
	young := row(models.ConvWaiting, nil, 0)    // an open under way
	requeued := row(models.ConvOpen, &agent, 0) // back to waiting in Redis
	handed := row(models.ConvWaiting, nil, 0)   // handed out in Redis
	if _, err := repo.DB.NewUpdate().Table("chat_conversations").Set("opened_at = ?", time.Now()).Where("id = ?", young).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	live := func(cid uint64, kv ...string) {
		if err := testRC.Do(ctx, testRC.B().Hset().Key(s.k.conv(utoa(cid))).FieldValue().FieldValue("user", "1").
			FieldValue("opened", itoa(old.UnixMilli())).FieldValue(kv[0], kv[1]).FieldValue(kv[2], kv[3]).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	live(requeued, "status", "waiting", "agent", "")
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	live(handed, "status", "open", "agent", utoa(agent))
	testRC.Do(ctx, testRC.B().Hset().Key(s.k.conv(utoa(handed))).FieldValue().FieldValue("reason", ReasonBacklog).FieldValue("at", itoa(at.UnixMilli())).Build())
	testRC.Do(ctx, testRC.B().Hdel().Key(s.k.conv(utoa(requeued))).Field("agent").Build())
	testRC.Do(ctx, testRC.B().Set().Key(s.k.built()).Value("1").Build())
	s.reconcile(ctx)
	for _, tc := range []struct {
		name   string
		cid    uint64
		status string // "" for no row
	}{{"orphan", orphan, ""}, {"closed", closed, models.ConvClosed}, {"young", young, models.ConvWaiting},
		{"requeued", requeued, models.ConvWaiting}, {"handed", handed, models.ConvOpen}} {
		c, err := repo.GetConversation(ctx, tc.cid)
		got := ""
		if err == nil {
			got = c.Status
		} else if !errors.Is(err, models.ErrNoConversation) {
			t.Fatal(err)
		}
		if got != tc.status {
			t.Errorf("%s: MySQL status %q, want %q", tc.name, got, tc.status)
		}
	}
	var hold models.ChatHold
	if err := repo.DB.NewSelect().Model(&hold).Where("conversation_id = ?", handed).Scan(ctx); err != nil ||
		hold.AgentID != agent || hold.Reason != ReasonBacklog || !hold.At.Equal(at) {
		t.Errorf("hold of the repaired hand-out = %+v, %v; want agent %d, %s at %v", hold, err, agent, ReasonBacklog, at)
	}
	// What the repair found without its frames is announced again.
	s.retell(ctx)
	if got := rec.types(AgentKey(agent)); !slices.Contains(got, "chat.assigned") || !slices.Contains(got, "chat.closed") {
		t.Errorf("agent got %v, want chat.assigned (handed) and chat.closed (closed)", got)
	}
}

// A line into a live conversation whose MySQL row is gone (what the old
// open path left after a lost answer) is not acked into nothing: the
// row is put back from Redis first, so MySQL shows the conversation and
// its lines. Before, the line was stored, acked, and belonged nowhere.
func TestLineIntoAConversationMySQLLostRestoresIt(t *testing.T) {
	repo := newBrokenDB(t)
	s, _ := newServiceWith(t, Config{Settle: time.Millisecond}, func(p *Params) { p.Repo = repo })
	ctx := context.Background()
	agent, uid := ids.Add(1), ids.Add(1)
	connectAgent(t, s, agent)
	first, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "one"})
	if err != nil {
		t.Fatal(err)
	}
	cid := parseU(first.ConversationID)
	if _, err := repo.DB.ExecContext(ctx, "DELETE FROM chat_conversations WHERE id = ?", cid); err != nil {
		t.Fatal(err)
	}
	for _, who := range []Sender{{ID: uid}, {ID: agent, Agent: true, Name: "A"}} {
		if _, err := s.Send(ctx, who, nil, SendRequest{ConversationID: first.ConversationID, Text: "again"}); err != nil {
			t.Fatalf("Send by %s = %v", who.key(), err)
		}
	}
	c, err := repo.GetConversation(ctx, cid)
	if err != nil || c.UserID != uid || c.Status != models.ConvOpen || c.AgentID == nil || *c.AgentID != agent {
		t.Fatalf("MySQL row = %+v, %v; want it back, open, held by %d", c, err, agent)
	}
	page, err := s.Messages(ctx, Sender{ID: uid}, first.ConversationID, 0, 10)
	if err != nil || len(page.Messages) != 3 {
		t.Fatalf("Messages = %+v, %v; want the 3 lines", page, err)
	}
}

// A fresh open whose line MySQL fails to store: no ack, a 503, and the
// conversation is in Redis and in MySQL alike (announced, so the retry
// that joins it is not the first news); the retry stores the line.
func TestOpenWhoseLineFailsIsNotAcked(t *testing.T) {
	repo := newBrokenDB(t)
	s, rec := newServiceWith(t, Config{}, func(p *Params) { p.Repo = repo })
	ctx := context.Background()
	uid := ids.Add(1)
	if _, err := repo.DB.ExecContext(ctx, "RENAME TABLE chat_lines TO chat_lines_away"); err != nil {
		t.Fatal(err)
	}
	conn := &connRecorder{}
	// (No client_msg_id: its look-up would fail before the open.)
	_, err := s.Send(ctx, Sender{ID: uid}, conn, SendRequest{Text: "lost?"})
	if e, ok := AsError(err); !ok || e.Code != 503 {
		t.Fatalf("Send = %v, want a 503", err)
	}
	if got := conn.types(); len(got) != 0 {
		t.Fatalf("the connection got %v, want no ack", got)
	}
	cur, _ := testRC.Do(ctx, testRC.B().Get().Key(s.k.user(utoa(uid))).Build()).ToString()
	if c, err := repo.GetConversation(ctx, parseU(cur)); cur == "" || err != nil || c.Status != models.ConvWaiting {
		t.Fatalf("Redis has %q, MySQL %+v (%v); want the same waiting conversation in both", cur, c, err)
	}
	if got := rec.types(uid); !slices.Equal(got, []string{"chat.queued"}) {
		t.Fatalf("user got %v, want chat.queued", got)
	}
	if _, err := repo.DB.ExecContext(ctx, "RENAME TABLE chat_lines_away TO chat_lines"); err != nil {
		t.Fatal(err)
	}
	ack, err := s.Send(ctx, Sender{ID: uid}, conn, SendRequest{Text: "lost?", ClientMsgID: "f-1"})
	if err != nil || ack.ConversationID != cur {
		t.Fatalf("retry = %+v, %v; want it stored into %s", ack, err, cur)
	}
}

type connRecorder struct {
	mu     sync.Mutex
	frames []hub.Frame
}

func (c *connRecorder) Send(f ...hub.Frame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames = append(c.frames, f...)
	return true
}

func (c *connRecorder) types() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, f := range c.frames {
		out = append(out, f.Type)
	}
	return out
}

// The push of a hand-out to its agent fails (the user was told): the
// loop sends it again, so the agent, still connected, does not hold a
// conversation it never heard of. Once through, it is not sent again.
func TestAgentLearnsOfAHandOutWhosePushFailed(t *testing.T) {
	agent, uid := ids.Add(1), ids.Add(1)
	var push *failingPusher
	s, rec := newServiceWith(t, Config{Settle: time.Millisecond}, func(p *Params) {
		push = &failingPusher{recorder: p.Push.(*recorder), uid: AgentKey(agent)}
		p.Push = push
	})
	ctx := context.Background()
	connectAgent(t, s, agent)
	push.mu.Lock()
	push.fails = 1
	push.mu.Unlock()
	if _, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "are you there?"}); err != nil {
		t.Fatal(err)
	}
	if got := rec.types(uid); !slices.Contains(got, "chat.assigned") {
		t.Fatalf("user got %v, want chat.assigned", got)
	}
	if got := rec.types(AgentKey(agent)); slices.Contains(got, "chat.assigned") {
		t.Fatalf("agent got %v before the loop, want no chat.assigned (its push failed)", got)
	}
	s.retell(ctx)
	got := rec.types(AgentKey(agent))
	if !slices.Contains(got, "chat.assigned") || !slices.Contains(got, "chat.msg") {
		t.Fatalf("agent got %v after the loop, want chat.assigned and the line", got)
	}
	s.retell(ctx)
	if again := rec.types(AgentKey(agent)); len(again) != len(got) {
		t.Fatalf("agent got %v on the next loop, want nothing more", again[len(got):])
	}
}
