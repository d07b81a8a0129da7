package session

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pushdesk/pushdesk/app/activity"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/broadcast"
	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/app/cluster"
	"github.com/pushdesk/pushdesk/app/delivery"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/metrics"
	"github.com/pushdesk/pushdesk/internal/clock"
	"github.com/pushdesk/pushdesk/models"
)

// Deps is what the service needs; every field is required.
type Deps struct {
	Repo       *models.Repo
	Hub        *hub.Hub
	Cluster    *cluster.Service
	Activity   *activity.Service
	Broadcasts *broadcast.Service
	Delivery   *delivery.Service
	Chat       *chat.Service
	Log        *slog.Logger
	Metrics    *metrics.Metrics
	Clock      *clock.Clock
	Instance   string
	// UserHeartbeat and AgentHeartbeat are the ping intervals told in
	// hello, by role.
	UserHeartbeat, AgentHeartbeat time.Duration
	// FrameRate and FrameBurst are a user connection's frame budget (0:
	// the defaults); ChatLineLimit is an agent's chat lines per 10 s.
	FrameRate, FrameBurst, ChatLineLimit int
	// Connects is how many connects may run at once (0: 256); one that
	// cannot start within ConnectWait (0: 2 s) is refused with a
	// BusyError rather than left waiting (see Connect).
	Connects    int
	ConnectWait time.Duration
}

// Service runs sessions. Safe for concurrent use.
type Service struct {
	Deps
	slots  chan struct{}   // one per connect under way
	ctx    context.Context // ends background work (replays, syncs) at Close
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed against wg.Add
	closed bool
	wg     sync.WaitGroup // background work under way
}

// New returns the service.
func New(d Deps) *Service {
	s := &Service{Deps: d, slots: make(chan struct{}, cmp.Or(d.Connects, 256))}
	s.ConnectWait = cmp.Or(d.ConnectWait, 2*time.Second)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Close ends the replays and resyncs under way and waits for them, so
// none outlives the stores it uses.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// background runs fn on a goroutine Close waits for; after Close it runs
// nothing and reports false.
func (s *Service) background(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Go(fn)
	return true
}

// HeartbeatOf is the ping interval of a connection of role r.
func (s *Service) HeartbeatOf(r auth.Role) time.Duration {
	if r == auth.RoleAgent {
		return s.AgentHeartbeat
	}
	return s.UserHeartbeat
}

// Control acts on a control frame pushed to uid's connections here
// (cluster.Deps.Control): today only broadcast.ControlSegments.
func (s *Service) Control(uid uint64, f hub.Frame) {
	if f.Type == broadcast.ControlSegments {
		s.refreshSegments(uid)
	}
}

// refreshSegments reloads the segments of uid's clients on this instance
// and, since joining or leaving a segment changes which broadcasts count,
// sends each of them the user's counts (segment changes are rare).
func (s *Service) refreshSegments(uid uint64) {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	segs, err := s.Broadcasts.SegmentsOf(ctx, uid)
	if err != nil {
		s.Log.Warn("refresh segments", "uid", uid, "err", err)
		return
	}
	s.Hub.EachOf(uid, func(c *hub.Client) { c.SetSegments(segs) })
	u, err := s.Delivery.Unread(ctx, uid)
	if err != nil {
		s.Log.Warn("counts after a segment change", "uid", uid, "err", err)
		return
	}
	f := frames.UnreadFrame(u)
	s.Hub.EachOf(uid, func(c *hub.Client) { c.Send(f) })
}

// Presence is GET /internal/v1/users/{uid}/presence.
type Presence struct {
	Online      bool       `json:"online"`
	Connections int64      `json:"connections"`
	LastSeen    *time.Time `json:"last_seen"`
}

// UserPresence returns uid's presence across instances.
func (s *Service) UserPresence(ctx context.Context, uid uint64) (Presence, error) {
	n, err := s.Cluster.Connections(ctx, uid)
	if err != nil {
		return Presence{}, err
	}
	p := Presence{Online: n > 0, Connections: n}
	seen, err := s.Activity.LastSeen(ctx, []uint64{uid})
	if err != nil {
		return Presence{}, err
	}
	if !seen[0].IsZero() {
		t := seen[0].UTC().Truncate(time.Second)
		p.LastSeen = &t
	}
	return p, nil
}

// BusyError is a connect refused because the instance is already running
// as many as it may: the client should come back after RetryAfter (which
// is spread, so refused clients do not all return together).
type BusyError struct{ RetryAfter time.Duration }

func (e *BusyError) Error() string {
	return fmt.Sprintf("too many connects under way, retry in %v", e.RetryAfter)
}

// admit takes a connect slot, waiting up to ConnectWait; release gives it
// back. Under a storm, connects beyond what the instance serves in that
// time are refused early instead of waiting on Redis and MySQL until
// their deadline.
func (s *Service) admit(ctx context.Context) (release func(), err error) {
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	default:
	}
	t := time.NewTimer(s.ConnectWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	case <-t.C:
		s.Metrics.Errors.WithLabelValues("connect shed").Inc()
		return nil, &BusyError{RetryAfter: time.Second + rand.N(4*time.Second)}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
