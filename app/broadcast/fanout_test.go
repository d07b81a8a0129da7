package broadcast

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/activity"
	"github.com/pushdesk/pushdesk/app/cluster"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/metrics"
	"github.com/pushdesk/pushdesk/internal/apptest"
	"github.com/pushdesk/pushdesk/internal/clock"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// instance is one in-process Pushdesk instance's broadcast side: its own
// hub, cluster member and desk, on Redis and MySQL shared with the others.
type instance struct {
	name string
	desk *Service
	hub  *hub.Hub
}

func newInstance(t *testing.T, name string, rc rueidis.Client, repo *models.Repo) *instance {
	t.Helper()
	log := apptest.Log()
	gen, err := ids.Lease(context.Background(), rc, name, log)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{name: name, hub: hub.New()}
	m := metrics.New(in.hub.Stats)
	identity, err := cluster.CheckIdentity(context.Background(), rc, repo)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cluster.New(context.Background(), cluster.Deps{Identity: identity,
		Redis: rc, Hub: in.hub, Repo: repo, IDs: gen, Log: log, Metrics: m, Instance: name,
		Counts:    func(context.Context, uint64) (hub.Frame, error) { return frames.UnreadFrame(frames.Unread{}), nil },
		Control:   func(uint64, hub.Frame) {},
		Broadcast: func(envelope []byte) { in.desk.Receive(envelope) },
		Resync:    func() {},
	})
	if err != nil {
		t.Fatal(err)
	}
	cl.Start()
	t.Cleanup(cl.Close)
	clk := new(clock.Clock)
	act := activity.New(activity.Deps{Redis: rc, Repo: repo, Clock: clk, Log: log, Metrics: m,
		Policy: activity.Policy{ActiveWithin: 24 * time.Hour, ReleaseAfter: 15 * 24 * time.Hour}})
	t.Cleanup(act.Close)
	in.desk = New(Deps{Redis: rc, Repo: repo, Hub: in.hub, Cluster: cl, Activity: act, IDs: gen.Gen, Clock: clk, Log: log,
		Metrics: m, Instance: name, ReleaseAfter: 15 * 24 * time.Hour, Retention: 15 * 24 * time.Hour})
	return in
}

// recorder is a connection's transport that keeps what it was sent.
type recorder struct {
	mu     sync.Mutex
	frames []hub.Frame
	onMsg  func()
}

func (r *recorder) Write(fs []hub.Frame) error {
	r.mu.Lock()
	r.frames = append(r.frames, fs...)
	r.mu.Unlock()
	for _, f := range fs {
		if f.Type == "msg" && r.onMsg != nil {
			r.onMsg()
		}
	}
	return nil
}
func (r *recorder) Ping() error       { return nil }
func (r *recorder) Close(int, string) {}

func (r *recorder) msgs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, f := range r.frames {
		if f.Type == "msg" {
			out = append(out, f.ID)
		}
	}
	return out
}

// connect adds a client in segment seg to in's hub.
func (in *instance) connect(t *testing.T, uid uint64, seg string) *recorder {
	t.Helper()
	c := hub.NewClient(uid, in.name+"-conn", "user", "ws")
	c.SetSegments([]string{"all", seg})
	in.hub.Add(c)
	c.EndReplay(nil)
	r := &recorder{}
	go func() { _ = c.Run(r, time.Hour) }()
	t.Cleanup(func() { c.Close(hub.CloseNormal, "") })
	return r
}

func storeBroadcast(t *testing.T, in *instance, seg string) uint64 {
	t.Helper()
	id := in.desk.IDs.Next()
	if err := in.desk.Repo.InsertBroadcast(context.Background(), &models.Broadcast{ID: id, Segment: seg, Kind: "system", Body: `{}`,
		Status: models.BroadcastScheduled, CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	return id
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// A fan-out that stopped after reaching some instances (its checkpoint
// lists them) reaches only the others when it runs again, and a second
// run while one holds the lock does not start.
func TestFanOutRestartsFromItsCheckpointAndNeverOverlaps(t *testing.T) {
	rc, _ := apptest.Redis(t)
	repo := apptest.Repo(t)
	a, b := newInstance(t, "a", rc, repo), newInstance(t, "b", rc, repo)
	ra, rb := a.connect(t, 1, "vip"), b.connect(t, 2, "vip")
	ctx := context.Background()

	id := storeBroadcast(t, a, "vip")
	if err := rc.Do(ctx, rc.B().Set().Key(keyFanoutLock(id)).Value("another run").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := a.desk.FanOut(ctx, id); !errors.Is(err, ErrFanoutBusy) {
		t.Fatalf("fan-out while another holds the lock = %v, want ErrFanoutBusy", err)
	}
	// That run "crashed" after reaching b: its lock lapsed, its checkpoint stays.
	if err := rc.Do(ctx, rc.B().Del().Key(keyFanoutLock(id)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Do(ctx, rc.B().Sadd().Key(keyFanoutDone(id)).Member("b").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := a.desk.FanOut(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "instance a's client never got the broadcast", func() bool { return len(ra.msgs()) == 1 })
	time.Sleep(200 * time.Millisecond) // what b would get, it gets in this time
	if got := rb.msgs(); len(got) != 0 {
		t.Fatalf("instance b, in the checkpoint, got %v again", got)
	}
	// Nobody's checkpoint: a fresh broadcast reaches both, once each.
	id2 := storeBroadcast(t, a, "vip")
	if err := a.desk.FanOut(ctx, id2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "instance b's client never got the second broadcast", func() bool { return len(rb.msgs()) == 1 })
	time.Sleep(200 * time.Millisecond)
	if got := ra.msgs(); len(got) != 2 {
		t.Fatalf("instance a's client got %v, want both broadcasts once", got)
	}
}

// A fan-out publishes to the other instances before it queues frames on
// its own connections (which takes far longer with many): by the time its
// own client is written, every other instance is in the checkpoint.
func TestFanOutReachesOtherInstancesFirst(t *testing.T) {
	rc, _ := apptest.Redis(t)
	repo := apptest.Repo(t)
	a := newInstance(t, "a", rc, repo)
	newInstance(t, "b", rc, repo)
	newInstance(t, "c", rc, repo)
	id := storeBroadcast(t, a, "all")
	othersDone := make(chan bool, 1)
	r := a.connect(t, 1, "x")
	r.onMsg = func() {
		n, _ := rc.Do(context.Background(), rc.B().Smismember().Key(keyFanoutDone(id)).Member("b", "c").Build()).AsIntSlice()
		othersDone <- len(n) == 2 && n[0] == 1 && n[1] == 1
	}
	if err := a.desk.FanOut(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-othersDone:
		if !ok {
			t.Fatal("the fan-out wrote its own connection before it had published to the other instances")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the local client never got the broadcast")
	}
}
