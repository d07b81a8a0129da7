package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

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
