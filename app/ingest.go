package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Ingest limits from the contract.
const (
	MaxRecipients = 1000
	MaxBodyBytes  = 16 << 10
	maxKeyLen     = 128
)

var kindRE = regexp.MustCompile(`^[a-z0-9_.-]{1,32}$`)

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
		return nil, Errorf(400, "invalid_json", "body is not a JSON object: %v", err)
	}
	if k, dup := duplicateKey(raw); dup {
		return nil, Errorf(400, "invalid_json", "the key %q appears twice", k)
	}
	req := &IngestRequest{}
	hasOne, hasMany := present(b.ToUID), present(b.ToUIDs)
	switch {
	case hasOne && hasMany:
		return nil, Invalid("give to_uid or to_uids, not both")
	case hasOne:
		uid, ok := parseUID(b.ToUID)
		if !ok {
			return nil, Invalid("to_uid must be a positive integer")
		}
		req.UIDs = []uint64{uid}
	case hasMany:
		var list []json.RawMessage
		if err := json.Unmarshal(b.ToUIDs, &list); err != nil {
			return nil, Invalid("to_uids must be an array of positive integers")
		}
		if len(list) == 0 || len(list) > MaxRecipients {
			return nil, Invalid("to_uids must hold 1 to %d user ids, got %d", MaxRecipients, len(list))
		}
		seen := make(map[uint64]struct{}, len(list))
		for i, r := range list {
			uid, ok := parseUID(r)
			if !ok {
				return nil, Invalid("to_uids[%d] must be a positive integer", i)
			}
			if _, dup := seen[uid]; dup {
				continue
			}
			seen[uid] = struct{}{}
			req.UIDs = append(req.UIDs, uid)
		}
	default:
		return nil, Invalid("to_uid or to_uids is required")
	}
	var err error
	if req.Kind, req.Body, err = parseKindBody(b.Kind, b.Body); err != nil {
		return nil, err
	}
	if req.CollapseKey, err = optString(b.CollapseKey, "collapse_key"); err != nil {
		return nil, err
	}
	if req.IdempotencyKey, err = optString(b.IdempotencyKey, "idempotency_key"); err != nil {
		return nil, err
	}
	return req, nil
}

// parseKindBody validates a message's kind and body (a JSON object of at
// most MaxBodyBytes, returned compacted).
func parseKindBody(rawKind, rawBody json.RawMessage) (string, json.RawMessage, error) {
	var kind string
	if !present(rawKind) || json.Unmarshal(rawKind, &kind) != nil || !kindRE.MatchString(kind) {
		return "", nil, Invalid("kind must be a string matching [a-z0-9_.-]{1,32}")
	}
	if !present(rawBody) || bytes.TrimSpace(rawBody)[0] != '{' {
		return "", nil, Invalid("body must be a JSON object")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, rawBody); err != nil {
		return "", nil, Invalid("body must be a JSON object")
	}
	if compact.Len() > MaxBodyBytes {
		return "", nil, Errorf(413, "body_too_large", "body is %d bytes, the limit is %d", compact.Len(), MaxBodyBytes)
	}
	return kind, compact.Bytes(), nil
}

// duplicateKey finds a key that appears twice in the top-level object of
// raw (already known to be valid JSON): encoding/json would silently take
// the last, so {"to_uid":1,"to_uid":2} would go to user 2.
func duplicateKey(raw []byte) (string, bool) {
	d := json.NewDecoder(bytes.NewReader(raw))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return "", false
		}
		k, _ := t.(string)
		if seen[k] {
			return k, true
		}
		seen[k] = true
		var skip json.RawMessage
		if d.Decode(&skip) != nil {
			return "", false
		}
	}
	return "", false
}

func present(r json.RawMessage) bool { return len(r) > 0 && string(r) != "null" }

func parseUID(r json.RawMessage) (uint64, bool) {
	uid, err := strconv.ParseUint(string(r), 10, 63)
	return uid, err == nil && uid > 0
}

func optString(r json.RawMessage, name string) (string, error) {
	if !present(r) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return "", Invalid("%s must be a string", name)
	}
	if len(s) > maxKeyLen {
		return "", Invalid("%s is longer than %d bytes", name, maxKeyLen)
	}
	return s, nil
}

// Ingest assigns ids, routes each recipient by activity and hands the
// deliveries to the queues. With an idempotency key, a repeat of an
// earlier call (also a concurrent one) answers that call's ids with
// Duplicate set, and enqueues nothing.
func (a *App) Ingest(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	if req.IdempotencyKey != "" {
		return a.ingestOnce(ctx, req)
	}
	return a.ingestNow(ctx, req)
}

func (a *App) ingestNow(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	p, err := a.planIngest(ctx, req)
	if err != nil {
		return nil, err
	}
	// The delayed part first: if the fast enqueue then fails, the caller's
	// retry repeats at most the low-priority part (with an idempotency key,
	// not even that: see ingestClaimed).
	if err := a.enqueueSlow(ctx, p); err != nil {
		return nil, err
	}
	if err := a.enqueueFast(ctx, p); err != nil {
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
func (a *App) planIngest(ctx context.Context, req *IngestRequest) (*ingestPlan, error) {
	routes, err := a.routes(ctx, req.UIDs)
	if err != nil {
		a.Log.Error("route by activity", "err", err)
		return nil, ErrUnavailable
	}
	at := time.Now().UnixMilli()
	fast := &Delivery{Kind: req.Kind, Body: req.Body, CollapseKey: req.CollapseKey, At: at}
	slow := &Delivery{Kind: req.Kind, Body: req.Body, CollapseKey: req.CollapseKey, At: at}
	res := &IngestResult{IDs: make([]string, len(req.UIDs))}
	for i, uid := range req.UIDs {
		id := a.IDs.Next()
		res.IDs[i] = FormatID(id)
		switch routes[i] {
		case RouteFast:
			fast.IDs, fast.UIDs = append(fast.IDs, id), append(fast.UIDs, uid)
		case RouteDelayed:
			slow.IDs, slow.UIDs = append(slow.IDs, id), append(slow.UIDs, uid)
		default:
			res.Released++
		}
	}
	res.Accepted = len(fast.UIDs) + len(slow.UIDs)
	a.Metrics.Released.Add(float64(res.Released))
	p := &ingestPlan{Result: res}
	if len(fast.UIDs) > 0 {
		p.Fast = fast
	}
	if len(slow.UIDs) > 0 {
		p.Slow = slow
	}
	return p, nil
}

func (a *App) enqueueSlow(ctx context.Context, p *ingestPlan) error {
	if p.Slow == nil {
		return nil
	}
	if err := a.Queue.EnqueueDelayed(ctx, p.Slow); err != nil {
		a.Log.Error("enqueue delayed delivery", "err", err)
		return ErrUnavailable
	}
	a.Metrics.Ingested.WithLabelValues("delayed").Add(float64(len(p.Slow.UIDs)))
	return nil
}

func (a *App) enqueueFast(ctx context.Context, p *ingestPlan) error {
	if p.Fast == nil {
		return nil
	}
	if err := a.ingest.Submit(ctx, p.Fast); err != nil {
		a.Log.Error("enqueue delivery", "err", err)
		return ErrUnavailable
	}
	a.Metrics.Ingested.WithLabelValues("fast").Add(float64(len(p.Fast.UIDs)))
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

func (a *App) ingestOnce(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	key := keyIdempotency(req.IdempotencyKey)
	deadline := time.Now().Add(idemWait)
	for {
		err := a.Redis.Do(ctx, a.Redis.B().Set().Key(key).Value(idemPending).Nx().Px(idemClaimTTL).Build()).Error()
		if err == nil { // ours: run it
			res, err := a.ingestClaimed(ctx, req)
			if err != nil {
				a.Redis.Do(context.WithoutCancel(ctx), a.Redis.B().Del().Key(key).Build())
				return nil, err
			}
			if err := a.Redis.Do(ctx, a.Redis.B().Set().Key(key).Value(idemDone+string(mustJSON(res))).Px(idemTTL).Build()).Error(); err != nil {
				a.Log.Error("record idempotency result", "err", err)
			}
			return res, nil
		}
		if !rueidis.IsRedisNil(err) {
			a.Log.Error("claim idempotency key", "err", err)
			return nil, ErrUnavailable
		}
		v, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(key).Build()).ToString()
		switch {
		case err == nil && strings.HasPrefix(v, idemDone):
			var res IngestResult
			if err := json.Unmarshal([]byte(v[len(idemDone):]), &res); err != nil {
				return nil, fmt.Errorf("stored idempotency result: %w", err)
			}
			res.Duplicate = true
			a.Metrics.Duplicates.Inc()
			return &res, nil
		case err != nil && !rueidis.IsRedisNil(err):
			a.Log.Error("read idempotency key", "err", err)
			return nil, ErrUnavailable
		}
		// Pending (another call is running it) or just released: wait.
		if time.Now().After(deadline) {
			return nil, Errorf(409, "in_progress", "a request with this idempotency_key is still being processed; retry")
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done(): // the caller gave up (or timed out) waiting: not a bug of ours
			return nil, ErrUnavailable
		}
	}
}

// ingestClaimed runs an ingest call whose idempotency key this call holds.
// A call that enqueued the delayed part and then failed on the fast one
// left its plan behind (ids and the fast part), so its retry enqueues
// only the fast part, under the first call's ids, rather than the delayed
// part a second time under new ones.
func (a *App) ingestClaimed(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	planKey := keyIdempotencyPlan(req.IdempotencyKey)
	raw, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(planKey).Build()).AsBytes()
	var p *ingestPlan
	planned := err == nil // resumed, or stored below: spent once the fast part is in
	switch {
	case err == nil:
		p = new(ingestPlan)
		if err := json.Unmarshal(raw, p); err != nil || p.Result == nil {
			return nil, fmt.Errorf("stored ingest plan: %v", err)
		}
	case !rueidis.IsRedisNil(err):
		a.Log.Error("read ingest plan", "err", err)
		return nil, ErrUnavailable
	default:
		if p, err = a.planIngest(ctx, req); err != nil {
			return nil, err
		}
		if err := a.enqueueSlow(ctx, p); err != nil {
			return nil, err // nothing was enqueued: a retry plans afresh
		}
		if p.Slow != nil && p.Fast != nil {
			left := ingestPlan{Result: p.Result, Fast: p.Fast}
			if err := a.Redis.Do(ctx, a.Redis.B().Set().Key(planKey).Value(string(mustJSON(left))).Px(idemTTL).Build()).Error(); err != nil {
				a.Log.Warn("record ingest plan", "err", err) // a failure now would repeat the delayed part
			}
			planned = true
		}
	}
	if err := a.enqueueFast(ctx, p); err != nil {
		return nil, err
	}
	if planned {
		a.Redis.Do(context.WithoutCancel(ctx), a.Redis.B().Del().Key(planKey).Build())
	}
	return p.Result, nil
}
