package session

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/pushdesk/pushdesk/app/activity"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/app/delivery"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/models"
)

// ReplayLimit is how many unread messages a (re)connect replays, newest.
const ReplayLimit = 100

// MaxFrameBytes is the largest client frame; bigger ones close with 1009.
const MaxFrameBytes = 64 << 10

// ConnectOptions describe a new connection.
type ConnectOptions struct {
	Transport  string // "ws" or "sse"
	RemoteAddr string
	// LastEventID, when non-zero (SSE resume), replays the messages after
	// it instead of the newest unread ones.
	LastEventID uint64
}

func newConnID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Connect registers a connection for id, queues hello and the replay, and
// then lets live messages through. Live messages that arrive during the
// replay are held and deduplicated against it, so nothing is lost between
// the replay query and the live stream.
func (s *Service) Connect(ctx context.Context, id auth.Identity, opt ConnectOptions) (*hub.Client, error) {
	release, err := s.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	shown := id.UID
	if id.Role == auth.RoleAgent { // agents' ids are their own namespace
		id.UID = chat.AgentKey(id.UID)
	}
	c := hub.NewClient(id.UID, newConnID(), string(id.Role), opt.Transport)
	c.Name = id.Name
	// Segments first: a broadcast fanned out from now on must find them.
	s.Broadcasts.RememberGroups(ctx, id.UID, id.Groups)
	segs, err := s.Broadcasts.SegmentsOf(ctx, id.UID)
	if err != nil {
		return nil, fmt.Errorf("load segments: %w", err)
	}
	c.SetSegments(segs)
	// Broadcasts from before the end of the previous session count as read.
	if err := s.advanceBroadcastMark(ctx, id.UID); err != nil {
		return nil, err
	}
	s.Hub.Add(c)
	if err := s.Cluster.Register(ctx, c); err != nil {
		s.Hub.Remove(c)
		return nil, fmt.Errorf("register connection: %w", err)
	}
	// A connect that fails before hello must not count as a visit: moving
	// last seen would mark broadcasts read that the user never got.
	fail := func(err error) (*hub.Client, error) {
		s.Hub.Remove(c)
		c.Close(hub.CloseTryLater, "")
		if uerr := s.Cluster.Unregister(context.WithoutCancel(ctx), c); uerr != nil {
			s.Log.Warn("unregister connection", "uid", c.UID, "conn", c.ConnID, "err", uerr)
		}
		return nil, err
	}
	// Marks are read right after registering and before the counts: a
	// delivery marked before this read may have missed the connection and
	// its count; one marked after it finds the connection.
	flying, err := s.Delivery.Flying(ctx, id.UID, nil)
	if err != nil {
		return fail(err)
	}
	own, err := s.Delivery.Personal(ctx, id.UID)
	if err != nil {
		return fail(err)
	}
	u, err := s.Broadcasts.AddTo(ctx, id.UID, own)
	if err != nil {
		return fail(err)
	}
	c.SendDirect(hub.Frame{Type: "hello", State: &u, Data: frames.MustJSON(frames.Hello{
		Type: "hello", UID: strconv.FormatUint(shown, 10), ConnID: c.ConnID, HeartbeatS: int(s.HeartbeatOf(id.Role) / time.Second), Unread: u,
	})})
	// The chat's state follows hello (and waits, like live frames, for
	// the replay).
	if err := s.chatConnected(ctx, c); err != nil {
		if e, ok := chat.AsError(err); ok && e == chat.ErrAgentDisabled {
			return fail(apierr.New(403, "forbidden", "%s", e.Message))
		}
		return fail(err)
	}
	connected := func(ctx context.Context) {
		s.Cluster.LogConn(models.ConnEvent{UID: id.UID, ConnID: c.ConnID, InstanceID: s.Instance, Transport: opt.Transport,
			Role: string(id.Role), Event: "connect", RemoteAddr: opt.RemoteAddr, At: time.Now().UTC()})
		s.Activity.Touch(ctx, id.UID)
		s.Metrics.Connects.Inc()
	}
	if len(flying) > 0 {
		// A message pushed to this user before the connection registered
		// may not be committed yet (see Deliver). Replay once it is,
		// without holding up hello; live messages wait meanwhile.
		s.background(func() {
			ctx, cancel := context.WithTimeout(s.ctx, delivery.SettleWait+10*time.Second)
			defer cancel()
			go func() { // a client that leaves ends the wait
				select {
				case <-c.Done():
					cancel()
				case <-ctx.Done():
				}
			}()
			replayed, err := s.settledReplay(ctx, c, opt.LastEventID)
			if err != nil {
				s.Log.Warn("replay failed, closing the connection", "uid", c.UID, "conn", c.ConnID, "err", err)
				c.Close(hub.CloseTryLater, "")
				return
			}
			c.EndReplay(replayed)
			select {
			case <-c.Done(): // gone meanwhile: not a visit
			default:
				connected(ctx)
			}
		})
		return c, nil
	}
	// With nothing unread the replay queries are skipped (most connects);
	// a client can always ask for a full replay with {"type":"sync"}.
	skip := replaySkip{own: own.Total == 0, broadcasts: u.Total == own.Total}
	replayed, err := s.replay(ctx, c, opt.LastEventID, skip)
	if err != nil {
		return fail(err)
	}
	c.EndReplay(replayed)
	connected(ctx)
	return c, nil
}

// settledReplay waits for the deliveries to c's user in flight now, sends
// fresh counts (ones taken before could miss a message that was not yet
// counted) and replays everything (no count-based skipping).
func (s *Service) settledReplay(ctx context.Context, c *hub.Client, lastEventID uint64) (map[string]struct{}, error) {
	if _, err := s.Delivery.Settle(ctx, c.UID); err != nil {
		return nil, err
	}
	u, err := s.Delivery.Unread(ctx, c.UID)
	if err != nil {
		return nil, err
	}
	c.SendDirect(frames.UnreadFrame(u))
	return s.replay(ctx, c, lastEventID, replaySkip{})
}

// replay queues stored messages on c, oldest first: the resume after
// lastEventID when given (see resumeFrames), otherwise, or when the gap is
// too long to resume, the newest ReplayLimit unread (own messages and
// broadcasts).
func (s *Service) replay(ctx context.Context, c *hub.Client, lastEventID uint64, skip replaySkip) (map[string]struct{}, error) {
	var frames []hub.Frame
	resumed := false
	if lastEventID > 0 {
		var err error
		if frames, resumed, err = s.resumeFrames(ctx, c.UID, lastEventID); err != nil {
			return nil, err
		}
		skip = replaySkip{}
	}
	if !resumed {
		var rows []models.Message
		var bcasts []models.Broadcast
		if !skip.broadcasts {
			q, err := s.Broadcasts.Query(ctx, c.UID)
			if err != nil {
				return nil, err
			}
			q.Limit = ReplayLimit
			if bcasts, err = s.Repo.ListBroadcasts(ctx, q); err != nil {
				return nil, err
			}
		}
		if !skip.own {
			var err error
			if rows, err = s.Repo.ListMessages(ctx, models.ListQuery{UID: c.UID, UnreadOnly: true, Limit: ReplayLimit}); err != nil {
				return nil, err
			}
		}
		frames = mergeReplay(rows, bcasts, ReplayLimit)
	}
	keys := make(map[string]struct{}, len(frames))
	for _, f := range frames {
		keys[f.Key] = struct{}{}
	}
	c.Replay(frames)
	return keys, nil
}

// ResumeLimit caps an SSE resume: a stream that missed more than this many
// messages is replayed as a fresh connect is (the counts and the messages
// listing cover the rest).
const ResumeLimit = 1000

// resumeOverlap is how far before the last event a resume also replays
// unread messages: pushes run on concurrent workers (and the delayed queue
// holds its batches up to 10 s, a retry waits 1, 2, 4 s …), so a message
// can reach a stream after one with a later id, and a drop between the
// two would hide it. frames.Unread ones the stream did get in that window come
// again (replay:true); clients dedupe by id, as on every connect.
const resumeOverlap = 15 * time.Second

// resumeFrames lists what a stream that last saw lastEventID missed:
// every message and broadcast sent after it, read or not, and unread
// messages up to resumeOverlap older. ok is false when that is more than
// ResumeLimit.
func (s *Service) resumeFrames(ctx context.Context, uid, lastEventID uint64) (frames []hub.Frame, ok bool, err error) {
	q, err := s.Broadcasts.Query(ctx, uid)
	if err != nil {
		return nil, false, err
	}
	q.UnreadOnly = false
	q.After = ids.Time(lastEventID)
	q.Limit = ResumeLimit + 1
	bcasts, err := s.Repo.ListBroadcasts(ctx, q)
	if err != nil {
		return nil, false, err
	}
	// Sort keys start at the id and only grow (a collapse moves a message
	// up), so "sort key above the last id seen" covers every message
	// stored or re-pushed since, the collapsed one included.
	from := lastEventID - min(lastEventID, uint64(resumeOverlap.Milliseconds())<<ids.TimeShift)
	rows, err := s.Repo.ListResume(ctx, uid, lastEventID, from, ResumeLimit+1)
	if err != nil {
		return nil, false, err
	}
	if len(rows)+len(bcasts) > ResumeLimit {
		return nil, false, nil
	}
	return mergeReplay(rows, bcasts, ResumeLimit), true, nil
}

// broadcastSortKey places a broadcast among messages by its send time.
func broadcastSortKey(b *models.Broadcast) uint64 {
	if b.SentAt == nil {
		return b.ID
	}
	return max(uint64(b.SentAt.UnixMilli()-ids.Epoch)<<ids.TimeShift|b.ID&(1<<ids.TimeShift-1), b.ID)
}

// replaySkip says which replay queries the unread counts make pointless.
type replaySkip struct{ own, broadcasts bool }

// mergeReplay interleaves own messages and broadcasts by sort key, keeps
// the newest limit and returns them oldest first.
func mergeReplay(rows []models.Message, bcasts []models.Broadcast, limit int) []hub.Frame {
	type item struct {
		key   uint64
		frame hub.Frame
	}
	items := make([]item, 0, len(rows)+len(bcasts))
	for i := range rows {
		items = append(items, item{rows[i].SortKey, frames.Message(&rows[i], true)})
	}
	for i := range bcasts { // placed by when they were sent (a send_at one is newer than its id)
		items = append(items, item{broadcastSortKey(&bcasts[i]), frames.Broadcast(&bcasts[i], true)})
	}
	slices.SortFunc(items, func(x, y item) int { return cmp.Compare(x.key, y.key) })
	if len(items) > limit {
		items = items[len(items)-limit:]
	}
	out := make([]hub.Frame, len(items))
	for i, it := range items {
		out[i] = it.frame
	}
	return out
}

// advanceBroadcastMark moves uid's broadcast read mark up to their last
// seen (the end of their previous session), never back.
func (s *Service) advanceBroadcastMark(ctx context.Context, uid uint64) error {
	mark, err := s.Broadcasts.Mark(ctx, uid)
	if err != nil {
		return err
	}
	seen, err := s.Activity.LastSeen(ctx, []uint64{uid})
	if err != nil {
		return err
	}
	if seen[0].After(mark) {
		s.Broadcasts.AdvanceMark(ctx, uid, mark, seen[0])
	}
	return nil
}

// Disconnect unregisters c everywhere. Safe to call more than once.
func (s *Service) Disconnect(c *hub.Client, remote string) {
	if _, removed := s.Hub.Remove(c); !removed {
		return
	}
	c.Close(hub.CloseNormal, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.Cluster.Unregister(ctx, c); err != nil {
		s.Log.Warn("unregister connection", "uid", c.UID, "conn", c.ConnID, "err", err)
	}
	s.Cluster.LogConn(models.ConnEvent{UID: c.UID, ConnID: c.ConnID, InstanceID: s.Instance, Transport: c.Transport,
		Role: c.Role, Event: "disconnect", RemoteAddr: remote, At: time.Now().UTC()})
	s.Activity.Touch(ctx, c.UID)
	s.chatDisconnected(ctx, c)
}

// Heartbeat records that c's peer is alive (a pong or any frame): its
// user's last seen moves, at most once per activity.SeenEvery per connection.
func (s *Service) Heartbeat(c *hub.Client) {
	now := time.Now().UnixNano()
	last := c.LastTouch.Load()
	if now-last < int64(activity.SeenEvery) || !c.LastTouch.CompareAndSwap(last, now) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.Activity.Touch(ctx, c.UID)
}

type clientFrame struct {
	Type string            `json:"type"`
	IDs  []json.RawMessage `json:"ids"`
	All  bool              `json:"all"`
}

// HandleFrame acts on one client frame. Problems with the frame are
// answered with an error frame on c; the connection stays.
func (s *Service) HandleFrame(ctx context.Context, c *hub.Client, data []byte) {
	var f clientFrame
	if err := json.Unmarshal(data, &f); err != nil {
		c.SendDirect(frames.Error(400, "frame is not a JSON object"))
		return
	}
	if chat.HandlesFrame(f.Type) {
		s.Chat.HandleFrame(ctx, chatSender(c), c, data)
		return
	}
	var err error
	switch f.Type {
	case "ping":
		c.SendDirect(frames.Pong)
	case "ack":
		var ids []uint64
		if ids, err = parseIDs(f.IDs); err == nil {
			_, err = s.Ack(ctx, c.UID, ids)
		}
	case "read":
		var ids []uint64
		if !f.All {
			ids, err = parseIDs(f.IDs)
		}
		if err == nil {
			_, err = s.Read(ctx, c.UID, ids, f.All)
		}
	case "sync": // off the read loop, one in flight (see serveSync)
		c.Coalesce(func() { s.serveSync(c) })
	case "":
		err = apierr.Invalid("frame has no type")
	default:
		err = apierr.Invalid("unknown frame type %q", f.Type)
	}
	if err != nil {
		s.frameFailed(c, f.Type, err)
	}
}

// frameFailed answers a client frame that failed with an error frame: the
// error's own status, or 503 (logged) for a dependency's failure.
func (s *Service) frameFailed(c *hub.Client, typ string, err error) {
	if e, ok := apierr.As(err); ok {
		c.SendDirect(frames.Error(e.Status, e.Message))
		return
	}
	s.Log.Error("client frame failed", "type", typ, "uid", c.UID, "err", err)
	c.SendDirect(frames.Error(503, "temporarily unavailable, try again"))
}

// parseIDs reads message ids given as strings (or, leniently, numbers).
func parseIDs(raw []json.RawMessage) ([]uint64, error) {
	if len(raw) == 0 {
		return nil, apierr.Invalid("ids must be a non-empty array of message ids")
	}
	if len(raw) > delivery.MaxRecipients {
		return nil, apierr.Invalid("at most %d ids at once", delivery.MaxRecipients)
	}
	out := make([]uint64, len(raw))
	for i, r := range raw {
		s := string(r)
		if len(r) > 0 && r[0] == '"' {
			if json.Unmarshal(r, &s) != nil {
				return nil, apierr.Invalid("ids[%d] is not a message id", i)
			}
		}
		id, ok := ids.Parse(s)
		if !ok {
			return nil, apierr.Invalid("ids[%d] is not a message id", i)
		}
		out[i] = id
	}
	return out, nil
}

// ParseIDList is parseIDs for callers outside the package.
func ParseIDList(raw []json.RawMessage) ([]uint64, error) { return parseIDs(raw) }
