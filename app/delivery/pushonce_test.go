package delivery

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
)

// recorder is a connection's transport that keeps what it was sent.
type recorder struct {
	mu     sync.Mutex
	frames []hub.Frame
}

func (r *recorder) Write(fs []hub.Frame) error {
	r.mu.Lock()
	r.frames = append(r.frames, fs...)
	r.mu.Unlock()
	return nil
}
func (r *recorder) Ping() error       { return nil }
func (r *recorder) Close(int, string) {}

func (r *recorder) count(typ, id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, f := range r.frames {
		if f.Type == typ && (id == "" || f.ID == id) {
			n++
		}
	}
	return n
}

// connect registers a connection of uid on a's instance.
func connect(t *testing.T, a *Service, uid uint64) *recorder {
	t.Helper()
	c := hub.NewClient(uid, "conn-1", "user", "ws")
	a.Cluster.Hub.Add(c)
	if err := a.Cluster.Register(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	c.EndReplay(nil)
	r := &recorder{}
	go func() { _ = c.Run(r, time.Hour) }()
	t.Cleanup(func() { c.Close(hub.CloseNormal, "") })
	return r
}

// A delivery whose store fails after it pushed (MySQL hangs: the shard
// table is locked past the task's deadline) is retried, and fails again,
// and so on until MySQL is back: the first retry pushes the message once
// more (for a connection made meanwhile, or a push the first attempt did
// not get to), later ones store it and send counts only: at most one
// duplicate per message.
func TestRetriesAfterFailedStoresPushAtMostOnceMore(t *testing.T) {
	a := testApp(t, nil)
	ctx := context.Background()
	const uid = 6101
	r := connect(t, a, uid)
	conn, err := a.Repo.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "LOCK TABLES "+models.ShardTable(uid)+" WRITE"); err != nil {
		t.Fatal(err)
	}
	id := a.IDs.Next()
	ds := []*Delivery{{IDs: []uint64{id}, UIDs: []uint64{uid}, Kind: "comment", Body: []byte(`{}`), At: time.Now().UnixMilli()}}
	for attempt := range 2 { // the first attempt, and asynq's first retry: both fail
		try, cancel := context.WithTimeout(ctx, time.Second)
		err = a.Deliver(try, ds, attempt > 0)
		cancel()
		if err == nil {
			t.Fatal("the delivery succeeded with its shard locked")
		}
	}
	if _, err := conn.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
		t.Fatal(err)
	}
	if err := a.Deliver(ctx, ds, true); err != nil { // asynq's second retry
		t.Fatal(err)
	}
	sid := strconv.FormatUint(id, 10)
	deadline := time.Now().Add(5 * time.Second)
	for r.count("unread", "") < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	pushes := r.count("msg", sid)
	u, err := a.Unread(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accepted 1, stored %d, pushed %d (three attempts), unread %d", countStored(t, a, uid), pushes, u.Total)
	if pushes != 2 || u.Total != 1 {
		t.Fatalf("pushed %d times, unread %d; want 2 (at most one repeat) and 1", pushes, u.Total)
	}
}

func countStored(t *testing.T, a *Service, uid uint64) int {
	t.Helper()
	var n int
	if err := a.Repo.DB.NewSelect().TableExpr(models.ShardTable(uid)).ColumnExpr("COUNT(*)").Where("to_uid = ?", uid).Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n
}
