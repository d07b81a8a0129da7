package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/redis/rueidis"
)

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
			return nil, ErrInProgress
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
