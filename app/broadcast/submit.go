package broadcast

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/input"
	"github.com/pushdesk/pushdesk/internal/luascript"
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

// Request is a validated POST /internal/v1/broadcasts body.
type Request struct {
	Segment        string
	Kind           string
	Body           json.RawMessage
	IdempotencyKey string
	SendAt         *time.Time
	Cron           string
}

// Result answers a broadcast submission.
type Result struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// Parse validates a broadcast body.
func Parse(raw []byte) (*Request, error) {
	var b struct {
		Segment        json.RawMessage `json:"segment"`
		Kind           json.RawMessage `json:"kind"`
		Body           json.RawMessage `json:"body"`
		IdempotencyKey json.RawMessage `json:"idempotency_key"`
		SendAt         json.RawMessage `json:"send_at"`
		Cron           json.RawMessage `json:"cron"`
	}
	if err := input.Object(raw, &b); err != nil {
		return nil, err
	}
	req := &Request{}
	if !input.Present(b.Segment) || json.Unmarshal(b.Segment, &req.Segment) != nil || !segmentRE.MatchString(req.Segment) {
		return nil, apierr.Invalid(`segment must be "all" or a name matching [a-z0-9_.-]{1,64}`)
	}
	var err error
	if req.Kind, req.Body, err = input.KindBody(b.Kind, b.Body); err != nil {
		return nil, err
	}
	if req.IdempotencyKey, err = input.OptString(b.IdempotencyKey, "idempotency_key"); err != nil {
		return nil, err
	}
	sendAt, err := input.OptString(b.SendAt, "send_at")
	if err != nil {
		return nil, err
	}
	if sendAt != "" {
		t, err := time.Parse(time.RFC3339, sendAt)
		if err != nil {
			return nil, apierr.Invalid("send_at must be an RFC 3339 time such as 2026-11-22T21:00:00+08:00")
		}
		req.SendAt = &t
	}
	if req.Cron, err = input.OptString(b.Cron, "cron"); err != nil {
		return nil, err
	}
	if req.Cron != "" {
		if req.SendAt != nil {
			return nil, apierr.Invalid("give send_at or cron, not both")
		}
		if _, err := cronParser.Parse(req.Cron); err != nil {
			return nil, apierr.Invalid("cron must be a 5-field spec such as \"0 */5 * * *\": %v", err)
		}
	}
	return req, nil
}

// Queue schedules broadcast fan-outs; package jobs implements it.
type Queue interface {
	// EnqueueBroadcast runs the fan-out of broadcast id at at (now if zero).
	EnqueueBroadcast(ctx context.Context, id uint64, at time.Time) error
}

// Submit stores a broadcast and schedules its fan-out. A repeat
// within 15 minutes (same idempotency key, or same segment, kind and body)
// answers the first id with Duplicate set, also when the two race.
func (s *Service) Submit(ctx context.Context, req *Request) (*Result, error) {
	dk := "k:" + req.IdempotencyKey
	if req.IdempotencyKey == "" {
		sum := sha256.Sum256(slices.Concat([]byte(req.Segment), []byte{0}, []byte(req.Kind), []byte{0}, req.Body, []byte{0}, []byte(req.Cron)))
		dk = "h:" + hex.EncodeToString(sum[:])
	}
	id := s.IDs.Next()
	key := keyBroadcastDedupe(dk)
	err := s.Redis.Do(ctx, s.Redis.B().Set().Key(key).Value(ids.Format(id)).Nx().Px(broadcastDedupeTTL).Build()).Error()
	if rueidis.IsRedisNil(err) {
		first, gerr := s.Redis.Do(ctx, s.Redis.B().Get().Key(key).Build()).ToString()
		if gerr == nil {
			// The first call may have died between claiming and enqueueing:
			// make sure its fan-out is queued (idempotent by task id).
			if fid, ok := ids.Parse(first); ok {
				if b, berr := s.Repo.GetBroadcast(ctx, fid); berr == nil {
					if b.Status == models.BroadcastScheduled {
						at := time.Time{}
						if b.SendAt != nil {
							at = *b.SendAt
						}
						_ = s.Queue.EnqueueBroadcast(ctx, fid, at)
					}
					return &Result{ID: first, Duplicate: true}, nil
				} else if !errors.Is(berr, models.ErrNoMessage) {
					return &Result{ID: first, Duplicate: true}, nil
				}
				// Not stored: a racing first call still inserting, or a dead
				// one. Wait up to 2 s for the racer, then take over.
				for range 100 {
					time.Sleep(20 * time.Millisecond)
					if _, berr := s.Repo.GetBroadcast(ctx, fid); berr == nil {
						return &Result{ID: first, Duplicate: true}, nil
					}
				}
				err = s.Redis.Do(ctx, s.Redis.B().Set().Key(key).Value(ids.Format(id)).Px(broadcastDedupeTTL).Build()).Error()
			}
		}
	}
	if err != nil {
		return nil, apierr.ErrUnavailable
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
	fail := func(err error) (*Result, error) {
		s.Redis.Do(context.WithoutCancel(ctx), s.Redis.B().Del().Key(key).Build())
		s.Log.Error("submit broadcast", "err", err)
		return nil, apierr.ErrUnavailable
	}
	if err := s.Repo.InsertBroadcast(ctx, b); err != nil {
		return fail(err)
	}
	if req.Cron == "" {
		if err := s.Queue.EnqueueBroadcast(ctx, id, at); err != nil {
			return fail(err)
		}
	}
	return &Result{ID: ids.Format(id)}, nil
}

// NewOccurrence stores one run of a recurring broadcast as its own
// (scheduled) broadcast and returns its id; zero when the template is no
// longer recurring (cancelled) or another run took this occurrence. run
// names the attempt's task (its asynq task id, the same on every retry):
// a retry returns the occurrence its first attempt made, whatever minute
// it lands in, so a failed enqueue neither leaves that occurrence unsent
// nor makes a second one.
func (s *Service) NewOccurrence(ctx context.Context, templateID uint64, run string) (uint64, error) {
	t, err := s.Repo.GetBroadcast(ctx, templateID)
	if errors.Is(err, models.ErrNoMessage) {
		return 0, nil
	}
	if err != nil || t.Status != models.BroadcastRecurring {
		return 0, err
	}
	// Every instance's scheduler fires; asynq's Unique lock goes when the
	// first run ends, so the tick is claimed here: one run per tick. A
	// run that fails and is retried later still names the same tick.
	id := s.IDs.Next()
	keys := []string{keyOccurrence(templateID, occurrenceTick(t.Cron, s.Clock.Now()))}
	if run != "" {
		keys = append(keys, keyOccurrenceRun(templateID, run))
	}
	reply, err := claimOccurrenceScript.Exec(ctx, s.Redis, keys,
		[]string{ids.Format(id), strconv.Itoa(int(tickClaimTTL / time.Second)), strconv.Itoa(int(runClaimTTL / time.Second))}).AsStrSlice()
	if err != nil {
		return 0, err
	}
	if len(reply) != 2 {
		return 0, fmt.Errorf("claim occurrence: unexpected reply %v", reply)
	}
	pid, ok := ids.Parse(reply[1])
	if !ok {
		return 0, fmt.Errorf("claim occurrence: bad id %q", reply[1])
	}
	if reply[0] != "new" {
		b, err := s.Repo.GetBroadcast(ctx, pid)
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
	if err := s.Repo.InsertBroadcast(ctx, b); err != nil {
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

var (
	//go:embed lua/claim_occurrence.lua
	claimOccurrenceSrc    string
	claimOccurrenceScript = luascript.New(claimOccurrenceSrc)
)

// Pending lists scheduled and recurring broadcasts.
func (s *Service) Pending(ctx context.Context) ([]models.Broadcast, error) {
	return s.Repo.PendingBroadcasts(ctx)
}

// Cancel cancels a scheduled or recurring broadcast.
func (s *Service) Cancel(ctx context.Context, id uint64) error {
	ok, err := s.Repo.CancelBroadcast(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotPending
	}
	return nil
}
