package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Broadcast statuses.
const (
	BroadcastScheduled = "scheduled" // waits for send_at
	BroadcastRecurring = "recurring" // a cron template; each run is a child row
	BroadcastSent      = "sent"      // fanned out (or being fanned out)
	BroadcastCancelled = "cancelled"
)

// Broadcast is one system message for a segment, stored once.
type Broadcast struct {
	bun.BaseModel `bun:"table:broadcasts,alias:b"`

	ID        uint64     `bun:"id,pk" json:"id,string"`
	Segment   string     `bun:"segment" json:"segment"`
	Kind      string     `bun:"kind" json:"kind"`
	Body      string     `bun:"body" json:"-"`
	Status    string     `bun:"status" json:"status"`
	SendAt    *time.Time `bun:"send_at" json:"send_at,omitempty"`
	Cron      string     `bun:"cron" json:"cron,omitempty"`
	ParentID  uint64     `bun:"parent_id" json:"parent_id,string,omitempty"`
	CreatedAt time.Time  `bun:"created_at" json:"created_at"`
	SentAt    *time.Time `bun:"sent_at" json:"sent_at,omitempty"`
}

// UserSegment is one membership set through the API.
type UserSegment struct {
	bun.BaseModel `bun:"table:user_segments"`

	UID     uint64 `bun:"uid,pk"`
	Segment string `bun:"segment,pk"`
}

// BroadcastRead records one user's read of one broadcast.
type BroadcastRead struct {
	bun.BaseModel `bun:"table:broadcast_reads"`

	UID         uint64    `bun:"uid,pk"`
	BroadcastID uint64    `bun:"broadcast_id,pk"`
	ReadAt      time.Time `bun:"read_at"`
}

// InsertBroadcast stores b.
func (r *Repo) InsertBroadcast(ctx context.Context, b *Broadcast) error {
	if _, err := r.DB.NewInsert().Model(b).Exec(ctx); err != nil {
		return fmt.Errorf("insert broadcast: %w", err)
	}
	return nil
}

// GetBroadcast returns broadcast id, or ErrNoMessage.
func (r *Repo) GetBroadcast(ctx context.Context, id uint64) (*Broadcast, error) {
	b := new(Broadcast)
	err := r.DB.NewSelect().Model(b).Where("b.id = ?", id).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoMessage
	}
	if err != nil {
		return nil, fmt.Errorf("get broadcast %d: %w", id, err)
	}
	return b, nil
}

// MarkBroadcastSent moves a scheduled (or new) broadcast to sent, once,
// and returns it as stored when it is sent now (nil: cancelled).
func (r *Repo) MarkBroadcastSent(ctx context.Context, id uint64, at time.Time) (*Broadcast, error) {
	if _, err := r.DB.NewUpdate().Model((*Broadcast)(nil)).Set("status = ?, sent_at = ?", BroadcastSent, at).
		Where("id = ? AND status = ?", id, BroadcastScheduled).Exec(ctx); err != nil {
		return nil, fmt.Errorf("mark broadcast %d sent: %w", id, err)
	}
	b, err := r.GetBroadcast(ctx, id)
	if err != nil || b.Status != BroadcastSent {
		return nil, err
	}
	return b, nil
}

// CancelBroadcast cancels a scheduled or recurring broadcast; it reports
// false when there was nothing to cancel.
func (r *Repo) CancelBroadcast(ctx context.Context, id uint64) (bool, error) {
	res, err := r.DB.NewUpdate().Model((*Broadcast)(nil)).Set("status = ?", BroadcastCancelled).
		Where("id = ? AND status IN (?)", id, bun.In([]string{BroadcastScheduled, BroadcastRecurring})).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("cancel broadcast %d: %w", id, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// PendingBroadcasts lists scheduled and recurring broadcasts.
func (r *Repo) PendingBroadcasts(ctx context.Context) ([]Broadcast, error) {
	var out []Broadcast
	err := r.DB.NewSelect().Model(&out).Where("b.status IN (?)", bun.In([]string{BroadcastScheduled, BroadcastRecurring})).
		OrderExpr("b.id").Scan(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("list pending broadcasts: %w", err)
	}
	return out, nil
}

// BroadcastQuery selects sent broadcasts for a set of segments.
type BroadcastQuery struct {
	UID      uint64
	Segments []string
	// After: only broadcasts sent after this (the user's last seen or the
	// retention cut-off, whichever is later).
	After time.Time
	// UnreadOnly skips broadcasts the user read one by one.
	UnreadOnly bool
	// BeforeID, when non-zero, returns only older ones; Limit caps them.
	BeforeID uint64
	Limit    int
}

func (r *Repo) broadcastSelect(q BroadcastQuery) *bun.SelectQuery {
	sel := r.DB.NewSelect().Model((*Broadcast)(nil)).
		Where("b.segment IN (?) AND b.status = ? AND b.sent_at > ?", bun.In(q.Segments), BroadcastSent, q.After.UTC())
	if q.UnreadOnly {
		sel = sel.Where("NOT EXISTS (SELECT 1 FROM broadcast_reads AS r WHERE r.uid = ? AND r.broadcast_id = b.id)", q.UID)
	}
	if q.BeforeID > 0 {
		sel = sel.Where("b.id < ?", q.BeforeID)
	}
	return sel
}

// ListBroadcasts returns sent broadcasts for q, newest first.
func (r *Repo) ListBroadcasts(ctx context.Context, q BroadcastQuery) ([]Broadcast, error) {
	var out []Broadcast
	err := r.broadcastSelect(q).OrderExpr("b.id DESC").Limit(int64(q.Limit)).Scan(ctx, &out)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("list broadcasts: %w", err)
	}
	return out, nil
}

// NewestSent is when the most recently sent broadcast was sent (zero when
// none was): one indexed lookup.
func (r *Repo) NewestSent(ctx context.Context) (time.Time, error) {
	var at []time.Time
	err := r.DB.NewSelect().Model((*Broadcast)(nil)).ColumnExpr("b.sent_at").
		Where("b.status = ?", BroadcastSent).OrderExpr("b.sent_at DESC").Limit(1).Scan(ctx, &at)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("newest broadcast: %w", err)
	}
	if len(at) == 0 {
		return time.Time{}, nil
	}
	return at[0], nil
}

// CountBroadcasts counts q's broadcasts per kind.
func (r *Repo) CountBroadcasts(ctx context.Context, q BroadcastQuery) (map[string]int64, error) {
	var rows []struct {
		Kind string `bun:"kind"`
		N    int64  `bun:"n"`
	}
	err := r.broadcastSelect(q).ColumnExpr("b.kind, COUNT(*) AS n").GroupExpr("b.kind").Scan(ctx, &rows)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("count broadcasts: %w", err)
	}
	out := make(map[string]int64, len(rows))
	for _, row := range rows {
		out[row.Kind] = row.N
	}
	return out, nil
}

// ReadBroadcasts records that uid read broadcasts ids (already-read ones
// are ignored) and returns how many rows were new.
func (r *Repo) ReadBroadcasts(ctx context.Context, uid uint64, ids []uint64, at time.Time) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	rows := make([]BroadcastRead, len(ids))
	for i, id := range ids {
		rows[i] = BroadcastRead{UID: uid, BroadcastID: id, ReadAt: at.UTC()}
	}
	res, err := r.DB.NewInsert().Model(&rows).Ignore().Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("record broadcast reads: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// SetSegments replaces uid's API-set segments.
func (r *Repo) SetSegments(ctx context.Context, uid uint64, segments []string) error {
	return r.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewDelete().Model((*UserSegment)(nil)).Where("uid = ?", uid).Exec(ctx); err != nil {
			return err
		}
		if len(segments) == 0 {
			return nil
		}
		rows := make([]UserSegment, len(segments))
		for i, s := range segments {
			rows[i] = UserSegment{UID: uid, Segment: s}
		}
		_, err := tx.NewInsert().Model(&rows).Ignore().Exec(ctx)
		return err
	})
}

// Segments returns uid's API-set segments.
func (r *Repo) Segments(ctx context.Context, uid uint64) ([]string, error) {
	var out []string
	err := r.DB.NewSelect().Model((*UserSegment)(nil)).Column("segment").Where("uid = ?", uid).Scan(ctx, &out)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("segments of %d: %w", uid, err)
	}
	return out, nil
}

// BroadcastKinds returns the kind of each id that is a sent broadcast.
func (r *Repo) BroadcastKinds(ctx context.Context, ids []uint64) (map[uint64]string, error) {
	var rows []Broadcast
	err := r.DB.NewSelect().Model(&rows).Column("id", "kind").Where("b.id IN (?) AND b.status = ?", bun.In(ids), BroadcastSent).Scan(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("find broadcasts: %w", err)
	}
	out := make(map[uint64]string, len(rows))
	for _, b := range rows {
		out[b.ID] = b.Kind
	}
	return out, nil
}

// BroadcastReads returns which of ids uid read one by one.
func (r *Repo) BroadcastReads(ctx context.Context, uid uint64, ids []uint64) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	var got []uint64
	err := r.DB.NewSelect().TableExpr("broadcast_reads").Column("broadcast_id").
		Where("uid = ? AND broadcast_id IN (?)", uid, bun.In(ids)).Scan(ctx, &got)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("broadcast reads of %d: %w", uid, err)
	}
	for _, id := range got {
		out[id] = true
	}
	return out, nil
}
