package broadcast

// The fan-out: one broadcast to every instance, and each instance's push
// to its own connections in the segment.

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushdesk/pushdesk/app/cluster"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/redis/rueidis"
)

// FanOut sends broadcast id to every instance, each of which pushes it to
// its own connections in the segment. It is idempotent and restart-safe:
// a lock keeps a second trigger from running alongside, and a checkpoint
// (the set of instances reached) lets a restarted run skip them.
func (s *Service) FanOut(ctx context.Context, id uint64) error {
	lock := keyFanoutLock(id)
	if err := s.Redis.Do(ctx, s.Redis.B().Set().Key(lock).Value(s.Instance).Nx().Px(fanoutLockTTL).Build()).Error(); err != nil {
		if rueidis.IsRedisNil(err) {
			return ErrFanoutBusy
		}
		return err
	}
	defer s.Redis.Do(context.WithoutCancel(ctx), s.Redis.B().Del().Key(lock).Build())
	s.Log.Info("broadcast fan-out starts", "id", id, "since_submit", time.Since(ids.Time(id)))
	b, err := s.Repo.MarkBroadcastSent(ctx, id, time.Now().UTC())
	if err != nil {
		return err
	}
	if b == nil {
		return nil // cancelled
	}
	// The generation only after the mark: counts read at a generation
	// include every broadcast marked sent before it (broadcastUnreadGen).
	res := s.Redis.DoMulti(ctx,
		s.Redis.B().Incr().Key(KeyGen).Build(),
		s.Redis.B().Smembers().Key(keyFanoutDone(id)).Build())
	gen, err := res[0].AsInt64()
	if err != nil {
		return err
	}
	done, err := res[1].AsStrSlice()
	if err != nil {
		return err
	}
	insts, err := s.Cluster.Instances(ctx)
	if err != nil {
		return err
	}
	frame := frames.Broadcast(b, false)
	live := liveBroadcast{Segment: b.Segment, Kind: b.Kind, Gen: gen}
	payload := encodeEnvelope(live, frame)
	// Other instances first: a publish takes a Redis round trip, while
	// this instance's own fan-out takes as long as its connections need,
	// and they should not wait for it.
	slices.Sort(insts)
	if i := slices.Index(insts, s.Instance); i >= 0 {
		insts = append(slices.Delete(insts, i, i+1), s.Instance)
	}
	for _, inst := range insts {
		if slices.Contains(done, inst) {
			continue
		}
		if inst == s.Instance {
			s.fanOutLocal(live, frame)
		} else if err := s.Cluster.PublishBroadcast(ctx, inst, payload); err != nil {
			return fmt.Errorf("publish broadcast to %s: %w", inst, err)
		}
		for _, r := range s.Redis.DoMulti(ctx,
			s.Redis.B().Sadd().Key(keyFanoutDone(id)).Member(inst).Build(),
			s.Redis.B().Expire().Key(keyFanoutDone(id)).Seconds(int64((24 * time.Hour).Seconds())).Build()) {
			if err := r.Error(); err != nil {
				return err
			}
		}
	}
	return nil
}

// fanOutMemoMax bounds the distinct counts one fan-out remembers.
const fanOutMemoMax = 4096

// liveBroadcast is what an instance needs to fan a broadcast out: who
// gets it, and how it changes their counts.
type liveBroadcast struct {
	Segment string
	Kind    string
	Gen     int64 // the broadcast generation its send started
}

// fanOutLocal sends frame to every local connection in the broadcast's
// segment, in connection order split between fanOutParts goroutines; the
// frame's bytes are shared by all of them; each connection's write loop
// writes it.
// Each connection also gets its new counts: what it was last told plus
// this broadcast, unless what it was told already included it.
func (s *Service) fanOutLocal(live liveBroadcast, frame hub.Frame) int {
	start := time.Now()
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, sp := range s.Hub.Spans(fanOutParts()) {
		wg.Go(func() { n.Add(int64(s.fanOutPart(live, frame, sp))) })
	}
	wg.Wait()
	s.Metrics.Pushed.Add(float64(n.Load()))
	s.Log.Info("broadcast fanned out", "id", frame.ID, "segment", live.Segment, "connections", n.Load(), "took", time.Since(start))
	return int(n.Load())
}

// fanOutParts is how many goroutines share a local fan-out: one per CPU
// the process may use.
func fanOutParts() int { return runtime.GOMAXPROCS(0) }

func (s *Service) fanOutPart(live liveBroadcast, frame hub.Frame, sp hub.Span) int {
	n := 0
	// Most members were last told one of a few counts, so new unread
	// frames are memoised by the old counts' JSON: one encoding (and one
	// shared Unread) per distinct count, not per member. Members told the
	// same shared counts last time (by the fan-out before) are found by
	// the counts' address first, which saves encoding the key.
	memo := make(map[string]hub.Frame)
	byAddr := make(map[*frames.Unread]hub.Frame)
	var scratch []byte
	// One slice for every Send: it would escape, and cost an allocation
	// per member, if made per call. Send copies the frames out of it.
	out := make([]hub.Frame, 2)
	s.Hub.EachIn(sp, func(c *hub.Client) {
		if !c.InSegment(live.Segment) {
			return
		}
		var ok bool
		if u, known := c.State().(*frames.Unread); known && u.Gen < live.Gen {
			f, hit := byAddr[u]
			if !hit {
				scratch = frames.AppendUnread(scratch[:0], *u)
				if f, hit = memo[string(scratch)]; !hit {
					f = frames.UnreadFrame(u.Plus(live.Kind, live.Gen))
					if len(memo) < fanOutMemoMax {
						memo[string(scratch)] = f
					}
				}
				if len(byAddr) < fanOutMemoMax {
					byAddr[u] = f
				}
			}
			out[0], out[1] = frame, f
			ok = c.Send(out...)
		} else {
			out[0] = frame
			ok = c.Send(out[:1]...)
		}
		if ok {
			n++
		}
	})
	return n
}

// encodeEnvelope packs a broadcast for an instance channel:
// "<segment>\t<kind>\t<gen>\n" then the frame as in
// cluster.EncodeEnvelope.
func encodeEnvelope(live liveBroadcast, f hub.Frame) []byte {
	head := []byte(live.Segment + "\t" + live.Kind + "\t" + strconv.FormatInt(live.Gen, 10) + "\n")
	body := cluster.EncodeEnvelope(0, []hub.Frame{f})
	_, frames, _ := bytes.Cut(body, []byte{'\n'}) // drop the uid line
	return append(head, frames...)
}

// decodeEnvelope undoes encodeEnvelope.
func decodeEnvelope(msg []byte) (liveBroadcast, hub.Frame, error) {
	head, frames, ok := bytes.Cut(msg, []byte{'\n'})
	parts := strings.Split(string(head), "\t")
	if !ok || len(parts) != 3 {
		return liveBroadcast{}, hub.Frame{}, fmt.Errorf("malformed broadcast envelope")
	}
	gen, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return liveBroadcast{}, hub.Frame{}, fmt.Errorf("broadcast envelope generation %q: %w", parts[2], err)
	}
	_, fs, err := cluster.DecodeEnvelope(append([]byte("0\n"), frames...))
	if err != nil || len(fs) != 1 {
		return liveBroadcast{}, hub.Frame{}, fmt.Errorf("malformed broadcast envelope frame: %v", err)
	}
	fs[0].Shared = new(hub.Shared)
	return liveBroadcast{Segment: parts[0], Kind: parts[1], Gen: gen}, fs[0], nil
}

// --- segments ---
