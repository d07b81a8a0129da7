package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
	"github.com/robfig/cron/v3"
)

// A broadcast is stored once. Each instance fans it out to its own
// connections in the segment, walking its hub one shard at a time with
// one shared encoded frame; offline users see it through their unread
// count and replay. See docs/protocol.md for the read-state model.

const (
	broadcastDedupeTTL = 15 * time.Minute
	fanoutLockTTL      = time.Minute
	maxSegments        = 100
)

var segmentRE = regexp.MustCompile(`^[a-z0-9_.-]{1,64}$`)

// cronParser takes 5-field specs only: descriptors such as "@every 1s"
// would let one request broadcast to everyone every second.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// BroadcastRequest is a validated POST /internal/v1/broadcasts body.
type BroadcastRequest struct {
	Segment        string
	Kind           string
	Body           json.RawMessage
	IdempotencyKey string
	SendAt         *time.Time
	Cron           string
}

// BroadcastResult answers a broadcast submission.
type BroadcastResult struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// ParseBroadcast validates a broadcast body.
func ParseBroadcast(raw []byte) (*BroadcastRequest, error) {
	var b struct {
		Segment        json.RawMessage `json:"segment"`
		Kind           json.RawMessage `json:"kind"`
		Body           json.RawMessage `json:"body"`
		IdempotencyKey json.RawMessage `json:"idempotency_key"`
		SendAt         json.RawMessage `json:"send_at"`
		Cron           json.RawMessage `json:"cron"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, Errorf(400, "invalid_json", "body is not a JSON object: %v", err)
	}
	req := &BroadcastRequest{}
	if !present(b.Segment) || json.Unmarshal(b.Segment, &req.Segment) != nil || !segmentRE.MatchString(req.Segment) {
		return nil, Invalid(`segment must be "all" or a name matching [a-z0-9_.-]{1,64}`)
	}
	var err error
	if req.Kind, req.Body, err = parseKindBody(b.Kind, b.Body); err != nil {
		return nil, err
	}
	if req.IdempotencyKey, err = optString(b.IdempotencyKey, "idempotency_key"); err != nil {
		return nil, err
	}
	sendAt, err := optString(b.SendAt, "send_at")
	if err != nil {
		return nil, err
	}
	if sendAt != "" {
		t, err := time.Parse(time.RFC3339, sendAt)
		if err != nil {
			return nil, Invalid("send_at must be an RFC 3339 time such as 2026-11-22T21:00:00+08:00")
		}
		req.SendAt = &t
	}
	if req.Cron, err = optString(b.Cron, "cron"); err != nil {
		return nil, err
	}
	if req.Cron != "" {
		if req.SendAt != nil {
			return nil, Invalid("give send_at or cron, not both")
		}
		if _, err := cronParser.Parse(req.Cron); err != nil {
			return nil, Invalid("cron must be a 5-field spec such as \"0 */5 * * *\": %v", err)
		}
	}
	return req, nil
}

// BroadcastQueue schedules broadcast fan-outs; jobs implements it.
type BroadcastQueue interface {
	// EnqueueBroadcast runs the fan-out of broadcast id at at (now if zero).
	EnqueueBroadcast(ctx context.Context, id uint64, at time.Time) error
}

// SubmitBroadcast stores a broadcast and schedules its fan-out. A repeat
// within 15 minutes (same idempotency key, or same segment, kind and body)
// answers the first id with Duplicate set, also when the two race.
func (a *App) SubmitBroadcast(ctx context.Context, req *BroadcastRequest) (*BroadcastResult, error) {
	dk := "k:" + req.IdempotencyKey
	if req.IdempotencyKey == "" {
		sum := sha256.Sum256(slices.Concat([]byte(req.Segment), []byte{0}, []byte(req.Kind), []byte{0}, req.Body, []byte{0}, []byte(req.Cron)))
		dk = "h:" + hex.EncodeToString(sum[:])
	}
	id := a.IDs.Next()
	key := keyBroadcastDedupe(dk)
	err := a.Redis.Do(ctx, a.Redis.B().Set().Key(key).Value(FormatID(id)).Nx().Px(broadcastDedupeTTL).Build()).Error()
	if rueidis.IsRedisNil(err) {
		first, gerr := a.Redis.Do(ctx, a.Redis.B().Get().Key(key).Build()).ToString()
		if gerr == nil {
			// The first call may have died between claiming and enqueueing:
			// make sure its fan-out is queued (idempotent by task id).
			if fid, ok := ParseID(first); ok {
				if b, berr := a.Repo.GetBroadcast(ctx, fid); berr == nil {
					if b.Status == models.BroadcastScheduled {
						at := time.Time{}
						if b.SendAt != nil {
							at = *b.SendAt
						}
						_ = a.Broadcasts.EnqueueBroadcast(ctx, fid, at)
					}
					return &BroadcastResult{ID: first, Duplicate: true}, nil
				} else if !errors.Is(berr, models.ErrNoMessage) {
					return &BroadcastResult{ID: first, Duplicate: true}, nil
				}
				// Not stored: a racing first call still inserting, or a dead
				// one. Wait up to 2 s for the racer, then take over.
				for range 100 {
					time.Sleep(20 * time.Millisecond)
					if _, berr := a.Repo.GetBroadcast(ctx, fid); berr == nil {
						return &BroadcastResult{ID: first, Duplicate: true}, nil
					}
				}
				err = a.Redis.Do(ctx, a.Redis.B().Set().Key(key).Value(FormatID(id)).Px(broadcastDedupeTTL).Build()).Error()
			}
		}
	}
	if err != nil {
		return nil, ErrUnavailable
	}
	b := &models.Broadcast{ID: id, Segment: req.Segment, Kind: req.Kind, Body: string(req.Body),
		Status: models.BroadcastScheduled, Cron: req.Cron, CreatedAt: time.Now().UTC()}
	if req.Cron != "" {
		b.Status = models.BroadcastRecurring
	}
	at := time.Time{}
	if req.SendAt != nil && req.SendAt.After(time.Now()) {
		at = req.SendAt.UTC()
		b.SendAt = &at
	}
	fail := func(err error) (*BroadcastResult, error) {
		a.Redis.Do(context.WithoutCancel(ctx), a.Redis.B().Del().Key(key).Build())
		a.Log.Error("submit broadcast", "err", err)
		return nil, ErrUnavailable
	}
	if err := a.Repo.InsertBroadcast(ctx, b); err != nil {
		return fail(err)
	}
	if req.Cron == "" {
		if err := a.Broadcasts.EnqueueBroadcast(ctx, id, at); err != nil {
			return fail(err)
		}
	}
	return &BroadcastResult{ID: FormatID(id)}, nil
}

// NewOccurrence stores one run of a recurring broadcast as its own
// (scheduled) broadcast and returns its id; zero when the template is no
// longer recurring (cancelled) or another run took this occurrence. run
// names the attempt's task (its asynq task id, the same on every retry):
// a retry returns the occurrence its first attempt made, whatever minute
// it lands in, so a failed enqueue neither leaves that occurrence unsent
// nor makes a second one.
func (a *App) NewOccurrence(ctx context.Context, templateID uint64, run string) (uint64, error) {
	t, err := a.Repo.GetBroadcast(ctx, templateID)
	if errors.Is(err, models.ErrNoMessage) {
		return 0, nil
	}
	if err != nil || t.Status != models.BroadcastRecurring {
		return 0, err
	}
	// Every instance's scheduler fires; asynq's Unique lock goes when the
	// first run ends, so the tick is claimed here: one run per tick. A
	// run that fails and is retried later still names the same tick.
	id := a.IDs.Next()
	keys := []string{keyOccurrence(templateID, occurrenceTick(t.Cron, a.Clock.Now()))}
	if run != "" {
		keys = append(keys, keyOccurrenceRun(run))
	}
	reply, err := claimOccurrenceScript.Exec(ctx, a.Redis, keys,
		[]string{FormatID(id), strconv.Itoa(int(tickClaimTTL / time.Second)), strconv.Itoa(int(runClaimTTL / time.Second))}).AsStrSlice()
	if err != nil {
		return 0, err
	}
	if len(reply) != 2 {
		return 0, fmt.Errorf("claim occurrence: unexpected reply %v", reply)
	}
	pid, ok := ParseID(reply[1])
	if !ok {
		return 0, fmt.Errorf("claim occurrence: bad id %q", reply[1])
	}
	if reply[0] != "new" {
		b, err := a.Repo.GetBroadcast(ctx, pid)
		switch {
		case err == nil && b.Status == models.BroadcastScheduled:
			return pid, nil // not sent yet: the caller enqueues it again, idempotently
		case err == nil:
			return 0, nil // sent or cancelled
		case !errors.Is(err, models.ErrNoMessage):
			return 0, err
		case reply[0] == "tick":
			return 0, nil // another instance's run, still storing it
		}
		// This run's earlier attempt claimed it but did not store it.
	}
	b := &models.Broadcast{ID: pid, Segment: t.Segment, Kind: t.Kind, Body: t.Body,
		Status: models.BroadcastScheduled, ParentID: t.ID, CreatedAt: time.Now().UTC()}
	if err := a.Repo.InsertBroadcast(ctx, b); err != nil {
		return 0, err
	}
	return b.ID, nil
}

// How long a recurring broadcast's claims last: a tick's, and a run's
// (for its retries: longer than jobs' MaxRetry backoff).
const (
	tickClaimTTL = 24 * time.Hour
	runClaimTTL  = 24 * time.Hour
)

// occurrenceTick names the tick of cron spec a run at now belongs to (unix
// minutes): the latest at or before now, looked for in the day before
// (the scheduler runs in UTC); the current minute if there is none.
func occurrenceTick(spec string, now time.Time) int64 {
	now = now.UTC()
	sched, err := cronParser.Parse(spec)
	if err != nil {
		return now.Unix() / 60
	}
	t := sched.Next(now.Add(-24 * time.Hour))
	if t.IsZero() || t.After(now) {
		return now.Unix() / 60
	}
	for {
		n := sched.Next(t)
		if n.IsZero() || n.After(now) {
			return t.Unix() / 60
		}
		t = n
	}
}

// claimOccurrenceScript claims one occurrence of a recurring broadcast.
// KEYS: the tick's claim, then the run's (optional). ARGV: new id, the
// tick's TTL and the run's, in s. Returns {"run", id} when this run
// claimed before, {"tick", id} when another run took the tick (this run
// remembers it too), or {"new", ARGV[1]}.
var claimOccurrenceScript = newLuaScript(`
if #KEYS > 1 then
  local r = redis.call('GET', KEYS[2])
  if r then return {'run', r} end
end
local m = redis.call('GET', KEYS[1])
if m then
  if #KEYS > 1 then redis.call('SET', KEYS[2], m, 'EX', ARGV[3]) end
  return {'tick', m}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if #KEYS > 1 then redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3]) end
return {'new', ARGV[1]}`)

// ErrFanoutBusy is a fan-out already running elsewhere; retry later.
var ErrFanoutBusy = errors.New("broadcast fan-out already running")

// FanOut sends broadcast id to every instance, each of which pushes it to
// its own connections in the segment. It is idempotent and restart-safe:
// a lock keeps a second trigger from running alongside, and a checkpoint
// (the set of instances reached) lets a restarted run skip them. beforeEach,
// when set, runs before each instance (tests use it to stop midway).
func (a *App) FanOut(ctx context.Context, id uint64, beforeEach func(instance string) error) error {
	lock := keyFanoutLock(id)
	if err := a.Redis.Do(ctx, a.Redis.B().Set().Key(lock).Value(a.Instance).Nx().Px(fanoutLockTTL).Build()).Error(); err != nil {
		if rueidis.IsRedisNil(err) {
			return ErrFanoutBusy
		}
		return err
	}
	defer a.Redis.Do(context.WithoutCancel(ctx), a.Redis.B().Del().Key(lock).Build())
	a.Log.Info("broadcast fan-out starts", "id", id, "since_submit", time.Since(IDTime(id)))
	b, err := a.Repo.MarkBroadcastSent(ctx, id, time.Now().UTC())
	if err != nil {
		return err
	}
	if b == nil {
		return nil // cancelled
	}
	// The generation only after the mark: counts read at a generation
	// include every broadcast marked sent before it (broadcastUnreadGen).
	res := a.Redis.DoMulti(ctx,
		a.Redis.B().Incr().Key(keyBroadcastGen).Build(),
		a.Redis.B().Smembers().Key(keyInstances).Build(),
		a.Redis.B().Smembers().Key(keyFanoutDone(id)).Build())
	gen, err := res[0].AsInt64()
	if err != nil {
		return err
	}
	insts, err := res[1].AsStrSlice()
	if err != nil {
		return err
	}
	done, err := res[2].AsStrSlice()
	if err != nil {
		return err
	}
	frame := broadcastFrame(b, false)
	live := liveBroadcast{Segment: b.Segment, Kind: b.Kind, Gen: gen}
	payload := encodeBroadcastEnvelope(live, frame)
	// Other instances first: a publish takes a Redis round trip, while
	// this instance's own fan-out takes as long as its connections need,
	// and they should not wait for it.
	slices.Sort(insts)
	if i := slices.Index(insts, a.Instance); i >= 0 {
		insts = append(slices.Delete(insts, i, i+1), a.Instance)
	}
	for _, inst := range insts {
		if slices.Contains(done, inst) {
			continue
		}
		if beforeEach != nil {
			if err := beforeEach(inst); err != nil {
				return err
			}
		}
		if inst == a.Instance {
			a.fanOutLocal(live, frame)
		} else if err := a.Redis.Do(ctx, a.Redis.B().Publish().Channel(keyInstanceChannel(inst)).Message(rueidis.BinaryString(payload)).Build()).Error(); err != nil {
			return fmt.Errorf("publish broadcast to %s: %w", inst, err)
		}
		for _, r := range a.Redis.DoMulti(ctx,
			a.Redis.B().Sadd().Key(keyFanoutDone(id)).Member(inst).Build(),
			a.Redis.B().Expire().Key(keyFanoutDone(id)).Seconds(int64((24 * time.Hour).Seconds())).Build()) {
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
// frame's bytes are shared by all of them. An idle connection is written
// at once by the fan-out (hub.Client.Offer), a busy one gets it queued.
// Each connection also gets its new counts: what it was last told plus
// this broadcast, unless what it was told already included it.
func (a *App) fanOutLocal(live liveBroadcast, frame hub.Frame) int {
	start := time.Now()
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, sp := range a.Hub.Spans(fanOutParts()) {
		wg.Go(func() { n.Add(int64(a.fanOutPart(live, frame, sp))) })
	}
	wg.Wait()
	a.Metrics.Pushed.Add(float64(n.Load()))
	a.Log.Info("broadcast fanned out", "id", frame.ID, "segment", live.Segment, "connections", n.Load(), "took", time.Since(start))
	return int(n.Load())
}

// fanOutParts is how many goroutines share a local fan-out: one per CPU
// the process may use, as each spends most of its time in write calls.
func fanOutParts() int { return runtime.GOMAXPROCS(0) }

func (a *App) fanOutPart(live liveBroadcast, frame hub.Frame, sp hub.Span) int {
	n := 0
	// Most members were last told one of a few counts, so new unread
	// frames are memoised by the old counts' JSON: one encoding (and one
	// shared Unread) per distinct count, not per member. Members told the
	// same shared counts last time (by the fan-out before) are found by
	// the counts' address first, which saves encoding the key.
	memo := make(map[string]hub.Frame)
	byAddr := make(map[*Unread]hub.Frame)
	var scratch []byte
	// One slice for every Offer: it would escape, and cost an allocation
	// per member, if made per call. Offer keeps no reference to it.
	out := make([]hub.Frame, 2)
	a.Hub.EachIn(sp, func(c *hub.Client) {
		if !c.InSegment(live.Segment) {
			return
		}
		var ok bool
		if u, known := c.State().(*Unread); known && u.gen < live.Gen {
			f, hit := byAddr[u]
			if !hit {
				scratch = appendUnreadFrame(scratch[:0], *u)
				if f, hit = memo[string(scratch)]; !hit {
					f = unreadFrameOf(u.plus(live.Kind, live.Gen))
					if len(memo) < fanOutMemoMax {
						memo[string(scratch)] = f
					}
				}
				if len(byAddr) < fanOutMemoMax {
					byAddr[u] = f
				}
			}
			out[0], out[1] = frame, f
			ok = c.Offer(out...)
		} else {
			out[0] = frame
			ok = c.Offer(out[:1]...)
		}
		if ok {
			n++
		}
	})
	return n
}

func broadcastFrame(b *models.Broadcast, replay bool) hub.Frame {
	id := FormatID(b.ID)
	ts := b.CreatedAt
	if b.SentAt != nil {
		ts = *b.SentAt
	}
	f := hub.Frame{Type: "msg", ID: id, Key: id + ":1", Data: mustJSON(msgFrame{
		Type: "msg", ID: id, Kind: b.Kind, Body: json.RawMessage(b.Body), TS: ts.UnixMilli(),
		Replay: replay, Count: 1, Broadcast: true,
	})}
	if !replay {
		f.Shared = new(hub.Shared)
	}
	return f
}

// encodeBroadcastEnvelope packs a broadcast for an instance channel:
// "B\n<segment>\t<kind>\t<gen>\n" then the frame as in encodeEnvelope.
func encodeBroadcastEnvelope(live liveBroadcast, f hub.Frame) []byte {
	head := []byte("B\n" + live.Segment + "\t" + live.Kind + "\t" + strconv.FormatInt(live.Gen, 10) + "\n")
	body := encodeEnvelope(0, []hub.Frame{f})
	_, frames, _ := bytes.Cut(body, []byte{'\n'}) // drop the uid line
	return append(head, frames...)
}

// decodeBroadcastEnvelope undoes encodeBroadcastEnvelope (msg without its
// "B\n" prefix).
func decodeBroadcastEnvelope(msg []byte) (liveBroadcast, hub.Frame, error) {
	head, frames, ok := bytes.Cut(msg, []byte{'\n'})
	parts := strings.Split(string(head), "\t")
	if !ok || len(parts) != 3 {
		return liveBroadcast{}, hub.Frame{}, fmt.Errorf("malformed broadcast envelope")
	}
	gen, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return liveBroadcast{}, hub.Frame{}, fmt.Errorf("broadcast envelope generation %q: %w", parts[2], err)
	}
	_, fs, err := decodeEnvelope(append([]byte("0\n"), frames...))
	if err != nil || len(fs) != 1 {
		return liveBroadcast{}, hub.Frame{}, fmt.Errorf("malformed broadcast envelope frame: %v", err)
	}
	fs[0].Shared = new(hub.Shared)
	return liveBroadcast{Segment: parts[0], Kind: parts[1], Gen: gen}, fs[0], nil
}

// --- segments ---

// SetSegments replaces uid's API-set segments and refreshes the user's
// live connections.
func (a *App) SetSegments(ctx context.Context, uid uint64, segs []string) error {
	if err := a.Repo.SetSegments(ctx, uid, segs); err != nil {
		return err
	}
	a.invalidateBroadcastState(ctx, uid, true)
	return a.pushToUser(ctx, uid, hub.Frame{Type: ctlSegments})
}

// invalidateBroadcastState drops uid's cached broadcast counts (and, with
// dropSegments, the cached API-set segments) and bumps the state version
// (see keyBroadcastState) so fills already under way are not stored.
func (a *App) invalidateBroadcastState(ctx context.Context, uid uint64, dropSegments bool, extra ...rueidis.Completed) {
	keys := []string{keyBroadcastUnread(uid)}
	if dropSegments {
		keys = append(keys, keySegments(uid))
	}
	cmds := append(rueidis.Commands{
		a.Redis.B().Incr().Key(keyBroadcastState(uid)).Build(),
		a.Redis.B().Pexpire().Key(keyBroadcastState(uid)).Milliseconds((24 * time.Hour).Milliseconds()).Build(),
		a.Redis.B().Del().Key(keys...).Build(),
	}, extra...)
	a.Redis.DoMulti(ctx, cmds...)
}

// fillStateScript stores a set or hash (KEYS[1]) with a TTL unless the state
// version (KEYS[2]) moved from ARGV[1]. ARGV: version, ttl ms, the write
// command (SADD or HSET), then its arguments.
var fillStateScript = newLuaScript(`
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call(ARGV[3], KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`)

// fillCache runs fillStateScript for key with version v0.
func (a *App) fillCache(ctx context.Context, uid uint64, key, v0 string, ttl time.Duration, cmd string, args ...string) {
	argv := append([]string{v0, strconv.FormatInt(ttl.Milliseconds(), 10), cmd}, args...)
	fillStateScript.Exec(ctx, a.Redis, []string{key, keyBroadcastState(uid)}, argv)
}

func (a *App) stateVersion(ctx context.Context, uid uint64) (string, error) {
	v, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyBroadcastState(uid)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "0", nil
	}
	return v, err
}

// ctlSegments is an internal frame type: "this user's segments changed".
// It is consumed by the instance, never sent to a client.
const ctlSegments = "~seg"

// ParseSegments validates a PUT /internal/v1/users/{uid}/segments body.
func ParseSegments(raw []byte) ([]string, error) {
	var b struct {
		Segments *[]string `json:"segments"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, Errorf(400, "invalid_json", "body is not a JSON object: %v", err)
	}
	if b.Segments == nil {
		return nil, Invalid(`segments is required: {"segments":["authors",...]}`)
	}
	if len(*b.Segments) > maxSegments {
		return nil, Invalid("at most %d segments", maxSegments)
	}
	out := []string{}
	for i, s := range *b.Segments {
		if !segmentRE.MatchString(s) || s == "all" {
			return nil, Invalid(`segments[%d] must match [a-z0-9_.-]{1,64} and not be "all"`, i)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// segmentsOf returns every segment uid belongs to: "all", the API-set
// ones and the groups of the user's latest token.
func (a *App) segmentsOf(ctx context.Context, uid uint64) ([]string, error) {
	res := a.Redis.DoMulti(ctx,
		a.Redis.B().Smembers().Key(keySegments(uid)).Build(),
		a.Redis.B().Get().Key(keyTokenGroups(uid)).Build())
	api, err := res[0].AsStrSlice()
	if err != nil {
		return nil, err
	}
	var groups []string
	if g, _ := res[1].ToString(); g != "" {
		groups = strings.Split(g, ",")
	}
	if !slices.Contains(api, "~") {
		v0, err := a.stateVersion(ctx, uid)
		if err != nil {
			return nil, err
		}
		if api, err = a.Repo.Segments(ctx, uid); err != nil {
			return nil, err
		}
		a.fillCache(ctx, uid, keySegments(uid), v0, 24*time.Hour, "SADD", append([]string{"~"}, api...)...)
	}
	out := []string{"all"}
	for _, s := range slices.Concat(api, groups) {
		if s != "~" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// rememberGroups stores the groups of the user's token (sorted, joined),
// for membership computed where the token is not at hand. Only a change
// of groups drops the cached broadcast counts: most connects change none.
func (a *App) rememberGroups(ctx context.Context, uid uint64, groups []string) {
	sorted := slices.Sorted(slices.Values(groups))
	v := strings.Join(slices.Compact(sorted), ",")
	prev, err := a.Redis.Do(ctx, a.Redis.B().Set().Key(keyTokenGroups(uid)).Value(v).Get().
		Ex(a.Cfg.ReleaseAfter).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		prev, err = "", nil
	}
	if err != nil || prev != v {
		a.invalidateBroadcastState(ctx, uid, false)
	}
}

// refreshSegments reloads the segments of uid's clients on this instance
// and, since joining or leaving a segment changes which broadcasts count,
// sends each of them the user's counts (segment changes are rare).
func (a *App) refreshSegments(uid uint64) {
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	segs, err := a.segmentsOf(ctx, uid)
	if err != nil {
		a.Log.Warn("refresh segments", "uid", uid, "err", err)
		return
	}
	a.Hub.EachOf(uid, func(c *hub.Client) { c.SetSegments(segs) })
	u, err := a.Unread(ctx, uid)
	if err != nil {
		a.Log.Warn("counts after a segment change", "uid", uid, "err", err)
		return
	}
	f := unreadFrameOf(u)
	a.Hub.EachOf(uid, func(c *hub.Client) { c.Send(f) })
}

// --- read state ---

// broadcastMark returns the time before which broadcasts count as read
// for uid: the end of their previous session or their last read-all;
// for a user never seen, now (old broadcasts are not news to them).
func (a *App) broadcastMark(ctx context.Context, uid uint64) (time.Time, error) {
	v, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyBroadcastMark(uid)).Build()).ToString()
	if err == nil {
		ms, _ := strconv.ParseInt(v, 10, 64)
		return time.UnixMilli(ms), nil
	}
	if !rueidis.IsRedisNil(err) {
		return time.Time{}, err
	}
	seen, err := a.LastSeen(ctx, []uint64{uid})
	if err != nil {
		return time.Time{}, err
	}
	mark := seen[0]
	if mark.IsZero() {
		mark = a.Clock.Now()
	}
	a.setBroadcastMark(ctx, uid, mark)
	a.Redis.Do(ctx, a.Redis.B().Set().Key(keyBroadcastFirst(uid)).Value(strconv.FormatInt(mark.UnixMilli(), 10)).Nx().Ex(a.Cfg.Retention+24*time.Hour).Build())
	return mark, nil
}

// broadcastHistoryStart is when uid's broadcast history begins: their
// first mark, or the retention cut-off when that is later or unknown.
func (a *App) broadcastHistoryStart(ctx context.Context, uid uint64) time.Time {
	start := a.Clock.Now().Add(-a.Cfg.Retention)
	if v, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyBroadcastFirst(uid)).Build()).ToString(); err == nil {
		if ms, _ := strconv.ParseInt(v, 10, 64); time.UnixMilli(ms).After(start) {
			start = time.UnixMilli(ms)
		}
	}
	return start
}

func (a *App) setBroadcastMark(ctx context.Context, uid uint64, t time.Time) {
	a.invalidateBroadcastState(ctx, uid, false,
		a.Redis.B().Set().Key(keyBroadcastMark(uid)).Value(strconv.FormatInt(t.UnixMilli(), 10)).Ex(a.Cfg.ReleaseAfter+24*time.Hour).Build())
}

// broadcastQuery is uid's unread-broadcast query.
func (a *App) broadcastQuery(ctx context.Context, uid uint64) (models.BroadcastQuery, error) {
	segs, err := a.segmentsOf(ctx, uid)
	if err != nil {
		return models.BroadcastQuery{}, err
	}
	mark, err := a.broadcastMark(ctx, uid)
	if err != nil {
		return models.BroadcastQuery{}, err
	}
	after := a.Clock.Now().Add(-a.Cfg.Retention)
	if mark.After(after) {
		after = mark
	}
	return models.BroadcastQuery{UID: uid, Segments: segs, After: after, UnreadOnly: true}, nil
}

// broadcastUnread returns uid's unread broadcasts per kind, cached until
// a broadcast is sent or the user's state changes.
func (a *App) broadcastUnread(ctx context.Context, uid uint64) (map[string]int64, error) {
	b, _, err := a.broadcastUnreadGen(ctx, uid)
	return b, err
}

// broadcastUnreadGen is broadcastUnread with the broadcast generation the
// counts reflect: every broadcast of that generation or older is in them.
func (a *App) broadcastUnreadGen(ctx context.Context, uid uint64) (map[string]int64, int64, error) {
	res := a.Redis.DoMulti(ctx,
		a.Redis.B().Get().Key(keyBroadcastGen).Build(),
		a.Redis.B().Hgetall().Key(keyBroadcastUnread(uid)).Build())
	gen, err := res[0].AsInt64()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, 0, err
	}
	if h, err := res[1].AsIntMap(); err == nil && len(h) > 0 && h[fieldBroadcastGen] == gen {
		delete(h, fieldBroadcastGen)
		return h, gen, nil
	}
	v0, err := a.stateVersion(ctx, uid)
	if err != nil {
		return nil, 0, err
	}
	q, err := a.broadcastQuery(ctx, uid)
	if err != nil {
		return nil, 0, err
	}
	counts, err := a.Repo.CountBroadcasts(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	args := []string{fieldBroadcastGen, strconv.FormatInt(gen, 10)}
	for k, n := range counts {
		args = append(args, k, strconv.FormatInt(n, 10))
	}
	a.fillCache(ctx, uid, keyBroadcastUnread(uid), v0, time.Hour, "HSET", args...)
	return counts, gen, nil
}

// withBroadcasts adds uid's unread broadcasts to a personal snapshot.
func (a *App) withBroadcasts(ctx context.Context, uid uint64, u Unread) (Unread, error) {
	b, gen, err := a.broadcastUnreadGen(ctx, uid)
	if err != nil {
		return u, err
	}
	addBroadcasts(&u, b)
	u.gen = gen
	return u, nil
}

// addBroadcasts adds broadcast counts (fields starting with "~" skipped).
func addBroadcasts(u *Unread, b map[string]int64) {
	for k, n := range b {
		addBroadcast(u, k, n)
	}
}

// addBroadcast adds one kind's broadcast count (a "~" field is skipped).
func addBroadcast(u *Unread, kind string, n int64) {
	if n > 0 && kind[0] != '~' {
		u.ByKind[kind] += n
		u.Total += n
	}
}

// readBroadcasts marks the broadcasts among ids read for uid.
func (a *App) readBroadcasts(ctx context.Context, uid uint64, ids []uint64) (int64, error) {
	kinds, err := a.Repo.BroadcastKinds(ctx, ids)
	if err != nil || len(kinds) == 0 {
		return 0, err
	}
	q, err := a.broadcastQuery(ctx, uid)
	if err != nil {
		return 0, err
	}
	var mine []uint64
	list, err := a.Repo.ListBroadcasts(ctx, models.BroadcastQuery{UID: uid, Segments: q.Segments, After: q.After, UnreadOnly: true, Limit: 1000})
	if err != nil {
		return 0, err
	}
	for _, b := range list {
		if _, ok := kinds[b.ID]; ok {
			mine = append(mine, b.ID)
		}
	}
	n, err := a.Repo.ReadBroadcasts(ctx, uid, mine, time.Now())
	if err == nil && n > 0 {
		a.invalidateBroadcastState(ctx, uid, false)
	}
	return n, err
}

// PendingBroadcasts lists scheduled and recurring broadcasts.
func (a *App) PendingBroadcasts(ctx context.Context) ([]models.Broadcast, error) {
	return a.Repo.PendingBroadcasts(ctx)
}

// CancelBroadcast cancels a scheduled or recurring broadcast.
func (a *App) CancelBroadcast(ctx context.Context, id uint64) error {
	ok, err := a.Repo.CancelBroadcast(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return Errorf(404, "not_found", "no scheduled or recurring broadcast %d", id)
	}
	return nil
}
