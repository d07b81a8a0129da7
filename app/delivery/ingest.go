package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/pushdesk/pushdesk/app/activity"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/input"
	"github.com/redis/rueidis"
)

// MaxRecipients is the contract's limit of users per ingest call.
const MaxRecipients = 1000

// Delivery is one ingest call's work for the queue: one message per
// recipient, all with the same kind and body. Ids are fixed at ingest, so
// a retried delivery writes and pushes the same ids again (idempotent).
type Delivery struct {
	IDs         []uint64        `json:"ids"`
	UIDs        []uint64        `json:"uids"`
	Kind        string          `json:"kind"`
	Body        json.RawMessage `json:"body"`
	CollapseKey string          `json:"ck,omitempty"`
	At          int64           `json:"at"` // unix ms at ingest
}

// IngestResult is the answer to an ingest call. IDs has one id per
// distinct recipient, in order; Released (an extension) counts recipients
// inactive for too long, whose message was not stored (their id names
// nothing).
type IngestResult struct {
	IDs       []string `json:"ids"`
	Accepted  int      `json:"accepted"`
	Duplicate bool     `json:"duplicate"`
	Released  int      `json:"released,omitempty"`
}

type ingestBody struct {
	ToUID          json.RawMessage `json:"to_uid"`
	ToUIDs         json.RawMessage `json:"to_uids"`
	Kind           json.RawMessage `json:"kind"`
	Body           json.RawMessage `json:"body"`
	CollapseKey    json.RawMessage `json:"collapse_key"`
	IdempotencyKey json.RawMessage `json:"idempotency_key"`
}

// IngestRequest is a validated POST /internal/v1/messages body.
type IngestRequest struct {
	UIDs           []uint64
	Kind           string
	Body           json.RawMessage // compact
	CollapseKey    string
	IdempotencyKey string
}

// ParseIngest validates a raw ingest body against the contract.
func ParseIngest(raw []byte) (*IngestRequest, error) {
	var b ingestBody
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, apierr.New(400, "invalid_json", "body is not a JSON object: %v", err)
	}
	if k, dup := input.DuplicateKey(raw); dup {
		return nil, apierr.New(400, "invalid_json", "the key %q appears twice", k)
	}
	req := &IngestRequest{}
	hasOne, hasMany := input.Present(b.ToUID), input.Present(b.ToUIDs)
	switch {
	case hasOne && hasMany:
		return nil, apierr.Invalid("give to_uid or to_uids, not both")
	case hasOne:
		uid, ok := input.ParseUID(b.ToUID)
		if !ok {
			return nil, apierr.Invalid("to_uid must be a positive integer")
		}
		req.UIDs = []uint64{uid}
	case hasMany:
		var list []json.RawMessage
		if err := json.Unmarshal(b.ToUIDs, &list); err != nil {
			return nil, apierr.Invalid("to_uids must be an array of positive integers")
		}
		if len(list) == 0 || len(list) > MaxRecipients {
			return nil, apierr.Invalid("to_uids must hold 1 to %d user ids, got %d", MaxRecipients, len(list))
		}
		seen := make(map[uint64]struct{}, len(list))
		for i, r := range list {
			uid, ok := input.ParseUID(r)
			if !ok {
				return nil, apierr.Invalid("to_uids[%d] must be a positive integer", i)
			}
			if _, dup := seen[uid]; dup {
				continue
			}
			seen[uid] = struct{}{}
			req.UIDs = append(req.UIDs, uid)
		}
	default:
		return nil, apierr.Invalid("to_uid or to_uids is required")
	}
	var err error
	if req.Kind, req.Body, err = input.KindBody(b.Kind, b.Body); err != nil {
		return nil, err
	}
	if req.CollapseKey, err = input.OptString(b.CollapseKey, "collapse_key"); err != nil {
		return nil, err
	}
	if req.IdempotencyKey, err = input.OptString(b.IdempotencyKey, "idempotency_key"); err != nil {
		return nil, err
	}
	return req, nil
}

// Ingest assigns ids, routes each recipient by activity and hands the
// deliveries to the queues. With an idempotency key, a repeat of an
// earlier call (also a concurrent one) answers that call's ids with
// Duplicate set, and enqueues nothing.
func (s *Service) Ingest(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	if req.IdempotencyKey != "" {
		return s.ingestOnce(ctx, req)
	}
	return s.ingestNow(ctx, req)
}

func (s *Service) ingestNow(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	p, err := s.planIngest(ctx, req)
	if err != nil {
		return nil, err
	}
	// The delayed part first: if the fast enqueue then fails, the caller's
	// retry repeats at most the low-priority part (with an idempotency key,
	// not even that: see ingestClaimed).
	if err := s.enqueueSlow(ctx, p); err != nil {
		return nil, err
	}
	if err := s.enqueueFast(ctx, p); err != nil {
		return nil, err
	}
	return p.Result, nil
}

// ingestPlan is an ingest call's answer and its deliveries by queue (nil
// when a queue gets none).
type ingestPlan struct {
	Result *IngestResult `json:"result"`
	Fast   *Delivery     `json:"fast,omitempty"`
	Slow   *Delivery     `json:"slow,omitempty"`
}

// planIngest assigns ids and routes each recipient by activity.
func (s *Service) planIngest(ctx context.Context, req *IngestRequest) (*ingestPlan, error) {
	routes, err := s.Activity.Routes(ctx, req.UIDs)
	if err != nil {
		s.Log.Error("route by activity", "err", err)
		return nil, apierr.ErrUnavailable
	}
	at := time.Now().UnixMilli()
	fast := &Delivery{Kind: req.Kind, Body: req.Body, CollapseKey: req.CollapseKey, At: at}
	slow := &Delivery{Kind: req.Kind, Body: req.Body, CollapseKey: req.CollapseKey, At: at}
	res := &IngestResult{IDs: make([]string, len(req.UIDs))}
	for i, uid := range req.UIDs {
		id := s.IDs.Next()
		res.IDs[i] = ids.Format(id)
		switch routes[i] {
		case activity.RouteFast:
			fast.IDs, fast.UIDs = append(fast.IDs, id), append(fast.UIDs, uid)
		case activity.RouteDelayed:
			slow.IDs, slow.UIDs = append(slow.IDs, id), append(slow.UIDs, uid)
		default:
			res.Released++
		}
	}
	res.Accepted = len(fast.UIDs) + len(slow.UIDs)
	s.Metrics.Released.Add(float64(res.Released))
	p := &ingestPlan{Result: res}
	if len(fast.UIDs) > 0 {
		p.Fast = fast
	}
	if len(slow.UIDs) > 0 {
		p.Slow = slow
	}
	return p, nil
}

func (s *Service) enqueueSlow(ctx context.Context, p *ingestPlan) error {
	if p.Slow == nil {
		return nil
	}
	if err := s.Queue.EnqueueDelayed(ctx, p.Slow); err != nil {
		s.Log.Error("enqueue delayed delivery", "err", err)
		return apierr.ErrUnavailable
	}
	s.Metrics.Ingested.WithLabelValues("delayed").Add(float64(len(p.Slow.UIDs)))
	return nil
}

func (s *Service) enqueueFast(ctx context.Context, p *ingestPlan) error {
	if p.Fast == nil {
		return nil
	}
	if err := s.ingest.Submit(ctx, p.Fast); err != nil {
		s.Log.Error("enqueue delivery", "err", err)
		return apierr.ErrUnavailable
	}
	s.Metrics.Ingested.WithLabelValues("fast").Add(float64(len(p.Fast.UIDs)))
	return nil
}

// Idempotency keys live idemTTL (the contract asks for at least 24 h). A
// key holds "p" while its first call runs and "d:<result JSON>" after.
const (
	idemTTL = 25 * time.Hour
	// idemClaimTTL bounds a claim whose process died before recording the
	// result: after it, a retry with the key runs the request again.
	idemClaimTTL = 30 * time.Second
	idemWait     = 3 * time.Second
	idemPending  = "p"
	idemDone     = "d:"
)

func (s *Service) ingestOnce(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	key := keyIdempotency(req.IdempotencyKey)
	deadline := time.Now().Add(idemWait)
	for {
		err := s.Redis.Do(ctx, s.Redis.B().Set().Key(key).Value(idemPending).Nx().Px(idemClaimTTL).Build()).Error()
		if err == nil { // ours: run it
			res, err := s.ingestClaimed(ctx, req)
			if err != nil {
				s.Redis.Do(context.WithoutCancel(ctx), s.Redis.B().Del().Key(key).Build())
				return nil, err
			}
			if err := s.Redis.Do(ctx, s.Redis.B().Set().Key(key).Value(idemDone+string(frames.MustJSON(res))).Px(idemTTL).Build()).Error(); err != nil {
				s.Log.Error("record idempotency result", "err", err)
			}
			return res, nil
		}
		if !rueidis.IsRedisNil(err) {
			s.Log.Error("claim idempotency key", "err", err)
			return nil, apierr.ErrUnavailable
		}
		v, err := s.Redis.Do(ctx, s.Redis.B().Get().Key(key).Build()).ToString()
		switch {
		case err == nil && strings.HasPrefix(v, idemDone):
			var res IngestResult
			if err := json.Unmarshal([]byte(v[len(idemDone):]), &res); err != nil {
				return nil, fmt.Errorf("stored idempotency result: %w", err)
			}
			res.Duplicate = true
			s.Metrics.Duplicates.Inc()
			return &res, nil
		case err != nil && !rueidis.IsRedisNil(err):
			s.Log.Error("read idempotency key", "err", err)
			return nil, apierr.ErrUnavailable
		}
		// Pending (another call is running it) or just released: wait.
		if time.Now().After(deadline) {
			return nil, apierr.New(409, "in_progress", "a request with this idempotency_key is still being processed; retry")
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done(): // the caller gave up (or timed out) waiting: not a bug of ours
			return nil, apierr.ErrUnavailable
		}
	}
}

// ingestClaimed runs an ingest call whose idempotency key this call holds.
// A call that enqueued the delayed part and then failed on the fast one
// left its plan behind (ids and the fast part), so its retry enqueues
// only the fast part, under the first call's ids, rather than the delayed
// part a second time under new ones.
func (s *Service) ingestClaimed(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	planKey := keyIdempotencyPlan(req.IdempotencyKey)
	raw, err := s.Redis.Do(ctx, s.Redis.B().Get().Key(planKey).Build()).AsBytes()
	var p *ingestPlan
	planned := err == nil // resumed, or stored below: spent once the fast part is in
	switch {
	case err == nil:
		p = new(ingestPlan)
		if err := json.Unmarshal(raw, p); err != nil || p.Result == nil {
			return nil, fmt.Errorf("stored ingest plan: %v", err)
		}
	case !rueidis.IsRedisNil(err):
		s.Log.Error("read ingest plan", "err", err)
		return nil, apierr.ErrUnavailable
	default:
		if p, err = s.planIngest(ctx, req); err != nil {
			return nil, err
		}
		if err := s.enqueueSlow(ctx, p); err != nil {
			return nil, err // nothing was enqueued: a retry plans afresh
		}
		if p.Slow != nil && p.Fast != nil {
			left := ingestPlan{Result: p.Result, Fast: p.Fast}
			if err := s.Redis.Do(ctx, s.Redis.B().Set().Key(planKey).Value(string(frames.MustJSON(left))).Px(idemTTL).Build()).Error(); err != nil {
				s.Log.Warn("record ingest plan", "err", err) // a failure now would repeat the delayed part
			}
			planned = true
		}
	}
	if err := s.enqueueFast(ctx, p); err != nil {
		return nil, err
	}
	if planned {
		s.Redis.Do(context.WithoutCancel(ctx), s.Redis.B().Del().Key(planKey).Build())
	}
	return p.Result, nil
}
