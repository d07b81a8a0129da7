package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
	"github.com/redis/rueidis"
)

// These tests drive a Service directly against a real Redis (a
// redis-server of the package's own, keys under a prefix of the test's
// own, deleted after) and MariaDB (a database of the package's own on the
// server PUSHDESK_MYSQL_DSN names, dropped after). What stands in for the
// rest of the process — pushes, the inbox, presence — records what it was
// asked.

var (
	testRepo *models.ChatRepo
	testRC   rueidis.Client
	testDSN  string // the package's database
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx := context.Background()
	redisURL, stopRedis, err := testsvc.PackageRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chat tests: redis:", err)
		return 1
	}
	defer stopRedis()
	opt, err := rueidis.ParseURL(redisURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opt.DisableCache = true
	if testRC, err = rueidis.NewClient(opt); err != nil {
		fmt.Fprintln(os.Stderr, "chat tests: redis:", err)
		return 1
	}
	defer testRC.Close()
	dsn, drop, err := testsvc.OwnDatabase("pushdesk_chat_test")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chat tests: mysql:", err)
		return 1
	}
	defer drop()
	testDSN = dsn
	db, err := models.Open(ctx, dsn, 4)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chat tests: mysql:", err)
		return 1
	}
	defer db.Close()
	if _, err := migrations.Run(ctx, db); err != nil {
		fmt.Fprintln(os.Stderr, "chat tests: migrate:", err)
		return 1
	}
	testRepo = &models.ChatRepo{DB: db}
	return m.Run()
}

type recorder struct {
	mu     sync.Mutex
	frames map[uint64][]hub.Frame
	online map[uint64]bool
	inbox  []string
}

func (r *recorder) PushToUser(_ context.Context, uid uint64, frames ...hub.Frame) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames[uid] = append(r.frames[uid], frames...)
	return nil
}

func (r *recorder) Notify(_ context.Context, uid uint64, kind string, body json.RawMessage, ck, idem string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inbox = append(r.inbox, fmt.Sprintf("%d %s %s", uid, kind, body))
	return nil
}

func (r *recorder) Online(_ context.Context, uid uint64) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.online[uid], nil
}

func (r *recorder) Alive(context.Context, string) (bool, error) { return true, nil }

// types lists the frame types pushed to uid.
func (r *recorder) types(uid uint64) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, f := range r.frames[uid] {
		out = append(out, f.Type)
	}
	return out
}

type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

var ids atomic.Uint64

func init() { ids.Store(uint64(time.Now().UnixNano())) }

func newTestService(tb testing.TB, cfg Config) (*Service, *recorder, *offsetClock) {
	tb.Helper()
	prefix := fmt.Sprintf("pdtest:{chat%d}:", ids.Add(1))
	cfg.KeyPrefix = prefix
	rec := &recorder{frames: map[uint64][]hub.Frame{}, online: map[uint64]bool{}}
	clock := &offsetClock{}
	s := New(Params{Config: cfg, Redis: testRC, Repo: testRepo, Push: rec, Inbox: rec, Presence: rec, Instances: rec,
		NewID: func() uint64 { return ids.Add(1) }, Instance: "test", Clock: clock,
		Mint: func(uint64, string, time.Duration) (string, error) { return "tok", nil }})
	tb.Cleanup(func() {
		ctx := context.Background()
		var cursor uint64
		for {
			e, err := testRC.Do(ctx, testRC.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				tb.Error(err)
				return
			}
			if len(e.Elements) > 0 {
				testRC.Do(ctx, testRC.B().Del().Key(e.Elements...).Build())
			}
			if cursor = e.Cursor; cursor == 0 {
				return
			}
		}
	})
	return s, rec, clock
}

// A second open while the per-user lock is held answers 416 and opens
// nothing; once the lock is gone the open goes through.
func TestOpenUnderTheLockIsRefused(t *testing.T) {
	s, _, _ := newTestService(t, Config{})
	ctx := context.Background()
	uid := ids.Add(1)
	if err := testRC.Do(ctx, testRC.B().Set().Key(s.k.lock(utoa(uid))).Value("other").Nx().Px(openLockTTL).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "hi", ClientMsgID: "l1"})
	if !errors.Is(err, ErrAssignLocked) {
		t.Fatalf("Send under the lock = %v, want ErrAssignLocked", err)
	}
	if cs, _ := testRepo.UserConversations(ctx, uid, 10); len(cs) != 0 {
		t.Fatalf("conversations = %d, want none", len(cs))
	}
	testRC.Do(ctx, testRC.B().Del().Key(s.k.lock(utoa(uid))).Build())
	ack, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "hi", ClientMsgID: "l1"})
	if err != nil || ack.ConversationID == "" {
		t.Fatalf("Send after the lock = %v, %v", ack, err)
	}
	if ttl, _ := testRC.Do(ctx, testRC.B().Pttl().Key(s.k.lock(utoa(uid))).Build()).AsInt64(); ttl != -2 {
		t.Fatalf("lock left behind (pttl %d)", ttl)
	}
}

// The lock expires by itself (a crashed opener does not block the user).
func TestOpenLockExpires(t *testing.T) {
	s, _, _ := newTestService(t, Config{})
	ctx := context.Background()
	uid := ids.Add(1)
	// What a crashed open leaves: the lock, with its expiry.
	testRC.Do(ctx, testRC.B().Set().Key(s.k.lock(utoa(uid))).Value("dead").Nx().Px(openLockTTL).Build())
	ttl, err := testRC.Do(ctx, testRC.B().Pttl().Key(s.k.lock(utoa(uid))).Build()).AsInt64()
	if err != nil || ttl <= 0 || ttl > openLockTTL.Milliseconds() {
		t.Fatalf("lock ttl = %d (%v), want up to %v", ttl, err, openLockTTL)
	}
}

// Capacity is a hard limit: an agent at capacity gets nothing more, and
// the conversation waits until it has room.
func TestCapacityLimitsAnAgent(t *testing.T) {
	s, rec, _ := newTestService(t, Config{Capacity: 2, Settle: time.Millisecond})
	ctx := context.Background()
	agent := ids.Add(1)
	if err := s.AgentConnected(ctx, Sender{ID: agent, Agent: true, Name: "Cap"}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	var users []uint64
	for range 3 {
		u := ids.Add(1)
		users = append(users, u)
		if _, err := s.Send(ctx, Sender{ID: u}, nil, SendRequest{Text: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"chat.assigned", "chat.assigned", "chat.queued"}
	for i, u := range users {
		if got := rec.types(u); len(got) == 0 || got[0] != want[i] {
			t.Fatalf("user %d got %v, want %s first", i, got, want[i])
		}
	}
	// The agent closes one: the waiting one gets it.
	cs, _ := testRepo.UserConversations(ctx, users[0], 1)
	if err := s.Close(ctx, Sender{ID: agent, Agent: true}, utoa(cs[0].ID)); err != nil {
		t.Fatal(err)
	}
	s.distribute(ctx)
	if got := rec.types(users[2]); got[len(got)-1] != "chat.assigned" {
		t.Fatalf("waiting user got %v, want chat.assigned after the close", got)
	}
}

// Redis losing the desk's state: it is rebuilt from MySQL, with who holds
// what and who waits.
func TestStateRebuiltFromMySQL(t *testing.T) {
	s, _, _ := newTestService(t, Config{Settle: time.Millisecond})
	ctx := context.Background()
	agent, u1, u2 := ids.Add(1), ids.Add(1), ids.Add(1)
	s.AgentConnected(ctx, Sender{ID: agent, Agent: true, Name: "R"}, nil)
	time.Sleep(5 * time.Millisecond)
	a1, _ := s.Send(ctx, Sender{ID: u1}, nil, SendRequest{Text: "one"})
	s.SetStatus(ctx, Sender{ID: agent, Agent: true}, "away")
	a2, _ := s.Send(ctx, Sender{ID: u2}, nil, SendRequest{Text: "two"})
	// Lose every key of the desk.
	for _, k := range []string{s.k.conv(a1.ConversationID), s.k.conv(a2.ConversationID), s.k.held(utoa(agent)), s.k.waiting(),
		s.k.user(utoa(u1)), s.k.user(utoa(u2)), s.k.built(), s.k.nconv()} {
		testRC.Do(ctx, testRC.B().Del().Key(k).Build())
	}
	s.ensureState(ctx)
	c1, ok1, _ := s.live(ctx, a1.ConversationID)
	c2, ok2, _ := s.live(ctx, a2.ConversationID)
	if !ok1 || c1.agent != agent || !ok2 || c2.agent != 0 {
		t.Fatalf("rebuilt = %+v %v, %+v %v; want the first held by %d and the second waiting", c1, ok1, c2, ok2, agent)
	}
	// (Other tests' live conversations in the shared schema come back too.)
	w, _ := testRC.Do(ctx, testRC.B().Zrange().Key(s.k.waiting()).Min("0").Max("-1").Build()).AsStrSlice()
	if !slices.Contains(w, a2.ConversationID) || slices.Contains(w, a1.ConversationID) {
		t.Fatalf("waiting = %v, want %s and not %s", w, a2.ConversationID, a1.ConversationID)
	}
}

// With MySQL gone, a send answers 503 and leaves no conversation behind
// in Redis that MySQL does not have.
func TestSendWithMySQLDownIsUnavailable(t *testing.T) {
	s, _, _ := newTestService(t, Config{})
	ctx := context.Background()
	db, err := models.Open(ctx, testDSN, 1)
	if err != nil {
		t.Fatal(err)
	}
	db.Close() // every query now fails
	s.repo = &models.ChatRepo{DB: db}
	uid := ids.Add(1)
	for _, cmid := range []string{"down-1", ""} { // with and without the dedupe lookup
		_, err = s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "hello?", ClientMsgID: cmid})
		if e, ok := AsError(err); !ok || e.Code != 503 {
			t.Fatalf("Send(%q) = %v, want a 503", cmid, err)
		}
	}
	if n, _ := testRC.Do(ctx, testRC.B().Exists().Key(s.k.user(utoa(uid))).Build()).AsInt64(); n != 0 {
		t.Fatal("Redis holds a conversation MySQL never stored")
	}
}

// An agent answers many conversations: its line limit is the user's
// per conversation it may hold (Rate × Capacity), a user's stays Rate.
func TestAgentLineLimitScalesWithCapacity(t *testing.T) {
	s, _, _ := newTestService(t, Config{Rate: 2, Capacity: 3, Settle: time.Millisecond})
	ctx := context.Background()
	agent, uid := ids.Add(1), ids.Add(1)
	if err := s.AgentConnected(ctx, Sender{ID: agent, Agent: true, Name: "A"}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	ack, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "u0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "u1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "u2"}); !errors.Is(err, ErrTooManyLines) {
		t.Fatalf("user's 3rd line = %v, want ErrTooManyLines", err)
	}
	a := Sender{ID: agent, Agent: true, Name: "A"}
	for i := range 6 {
		if _, err := s.Send(ctx, a, nil, SendRequest{ConversationID: ack.ConversationID, Text: fmt.Sprint("a", i)}); err != nil {
			t.Fatalf("agent's line %d = %v, want it stored (limit 2 × 3)", i+1, err)
		}
	}
	if _, err := s.Send(ctx, a, nil, SendRequest{ConversationID: ack.ConversationID, Text: "a6"}); !errors.Is(err, ErrTooManyLines) {
		t.Fatalf("agent's 7th line = %v, want ErrTooManyLines", err)
	}
}
