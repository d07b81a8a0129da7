package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
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

// IngestResult is the answer to an ingest call.
type IngestResult struct {
	IDs       []string `json:"ids"`
	Accepted  int      `json:"accepted"`
	Duplicate bool     `json:"duplicate"`
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
	if !present(b.Kind) || json.Unmarshal(b.Kind, &req.Kind) != nil || !kindRE.MatchString(req.Kind) {
		return nil, Invalid("kind must be a string matching [a-z0-9_.-]{1,32}")
	}
	if !present(b.Body) || bytes.TrimSpace(b.Body)[0] != '{' {
		return nil, Invalid("body must be a JSON object")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b.Body); err != nil {
		return nil, Invalid("body must be a JSON object")
	}
	if compact.Len() > MaxBodyBytes {
		return nil, Errorf(413, "body_too_large", "body is %d bytes, the limit is %d", compact.Len(), MaxBodyBytes)
	}
	req.Body = compact.Bytes()
	var err error
	if req.CollapseKey, err = optString(b.CollapseKey, "collapse_key"); err != nil {
		return nil, err
	}
	if req.IdempotencyKey, err = optString(b.IdempotencyKey, "idempotency_key"); err != nil {
		return nil, err
	}
	return req, nil
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

// Ingest assigns ids and hands the delivery to the queue.
func (a *App) Ingest(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	d := &Delivery{UIDs: req.UIDs, Kind: req.Kind, Body: req.Body, CollapseKey: req.CollapseKey, At: time.Now().UnixMilli()}
	res := &IngestResult{IDs: make([]string, len(req.UIDs)), Accepted: len(req.UIDs)}
	d.IDs = make([]uint64, len(req.UIDs))
	for i := range req.UIDs {
		d.IDs[i] = a.IDs.Next()
		res.IDs[i] = FormatID(d.IDs[i])
	}
	if err := a.ingest.Submit(ctx, d); err != nil {
		a.Log.Error("enqueue delivery", "err", err)
		return nil, ErrUnavailable
	}
	return res, nil
}

// Deliver stores deliveries' messages in their shards, counts them and
// pushes them to every connection of their users. It returns only when the
// rows are committed, so a failed or killed worker leaves the task to be
// retried; clients may then see an id twice (they dedupe by id).
//
// On a first attempt the push runs while the rows are being written, so a
// commit's fsync is not on the delivery path. A user found offline then is
// looked up again after the commit: one who connected in between did not
// get the push, and their replay query may have run before the commit, so
// they are pushed to now (with counts rebuilt from MySQL). A retry (retry
// is true) stores first, rebuilds the counters and only then pushes.
func (a *App) Deliver(ctx context.Context, ds []*Delivery, retry bool) error {
	var rows []models.Message
	for _, d := range ds {
		if len(d.IDs) != len(d.UIDs) {
			return fmt.Errorf("delivery has %d ids for %d users", len(d.IDs), len(d.UIDs))
		}
		at := time.UnixMilli(d.At).UTC()
		for i, uid := range d.UIDs {
			rows = append(rows, models.Message{
				ID: d.IDs[i], ToUID: uid, Kind: d.Kind, Body: string(d.Body), CollapseKey: d.CollapseKey,
				Count: 1, SortKey: d.IDs[i], CreatedAt: at, UpdatedAt: at,
			})
		}
	}
	if retry {
		if err := a.shardWriter.Submit(ctx, rows...); err != nil {
			return fmt.Errorf("store delivery: %w", err)
		}
		uids := make([]uint64, len(rows))
		for i := range rows {
			uids[i] = rows[i].ToUID
		}
		if err := a.resetUnread(ctx, uids...); err != nil {
			return fmt.Errorf("reset counters: %w", err)
		}
		_, stale := a.countAndPush(ctx, rows, "0")
		for _, i := range stale {
			if u, err := a.Unread(ctx, rows[i].ToUID); err == nil {
				_ = a.pushToUser(ctx, rows[i].ToUID, unreadFrameOf(u))
			}
		}
		return nil
	}
	stored := make(chan error, 1)
	go func() { stored <- a.shardWriter.Submit(ctx, rows...) }()
	offline, stale := a.countAndPush(ctx, rows, "1")
	if err := <-stored; err != nil {
		return fmt.Errorf("store delivery: %w", err)
	}
	if len(offline) > 0 {
		a.pushLateComers(ctx, rows, offline)
	}
	for _, i := range stale { // online, but the counter cache had expired
		if u, err := a.Unread(ctx, rows[i].ToUID); err == nil {
			_ = a.pushToUser(ctx, rows[i].ToUID, unreadFrameOf(u))
		}
	}
	return nil
}

// countAndPush counts each row in its user's unread cache (incr "1") and
// pushes it to the user's connections. It returns the indexes of rows whose
// user had no connection, and of those pushed without an unread frame
// because the user's counter cache was missing (it can only be rebuilt
// once the rows are committed). Push failures are logged, not returned: the
// rows are stored and reach the user on their next sync or connect.
func (a *App) countAndPush(ctx context.Context, rows []models.Message, incr string) (offline, stale []int) {
	execs := make([]rueidis.LuaExec, len(rows))
	for i := range rows {
		execs[i] = rueidis.LuaExec{Keys: []string{keyUnread(rows[i].ToUID), keyUserConns(rows[i].ToUID)}, Args: []string{rows[i].Kind, incr}}
	}
	for i, res := range deliverScript.ExecMulti(ctx, a.Redis, execs...) {
		online, counted, err := a.pushDelivered(ctx, &rows[i], res)
		if err != nil {
			a.Log.Warn("push failed", "uid", rows[i].ToUID, "err", err)
		}
		switch {
		case !online:
			offline = append(offline, i)
		case !counted:
			stale = append(stale, i)
		}
	}
	return offline, stale
}

// pushLateComers pushes rows[idx] to users who have connected since
// countAndPush found them offline.
func (a *App) pushLateComers(ctx context.Context, rows []models.Message, idx []int) {
	cmds := make(rueidis.Commands, len(idx))
	for j, i := range idx {
		cmds[j] = a.Redis.B().Hgetall().Key(keyUserConns(rows[i].ToUID)).Build()
	}
	for j, res := range a.Redis.DoMulti(ctx, cmds...) {
		inst, err := res.AsIntMap()
		if err != nil || len(inst) == 0 {
			continue
		}
		m := &rows[idx[j]]
		frames := []hub.Frame{messageFrame(m, false)}
		if err := a.resetUnread(ctx, m.ToUID); err == nil {
			if u, err := a.Unread(ctx, m.ToUID); err == nil {
				frames = append(frames, unreadFrameOf(u))
			}
		}
		if err := a.route(ctx, m.ToUID, inst, frames); err != nil {
			a.Log.Warn("push failed", "uid", m.ToUID, "err", err)
		}
	}
}

// pushDelivered pushes m after the deliver script ran. online reports
// whether its user had any connection, counted whether the push carried
// an unread frame.
func (a *App) pushDelivered(ctx context.Context, m *models.Message, res rueidis.RedisResult) (online, counted bool, err error) {
	parts, err := res.ToArray()
	if err != nil || len(parts) != 2 {
		return false, false, fmt.Errorf("deliver script for %d: %v", m.ToUID, err)
	}
	inst, err := parts[1].AsIntMap()
	if err != nil || len(inst) == 0 {
		return false, false, err
	}
	frames := []hub.Frame{messageFrame(m, false)}
	if h, err := parts[0].AsIntMap(); err == nil && len(h) > 0 {
		frames = append(frames, unreadFrameOf(unreadFromHash(h)))
		counted = true
	}
	return true, counted, a.route(ctx, m.ToUID, inst, frames)
}
