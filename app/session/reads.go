package session

// What a user does with stored messages: read, ack, and page through
// them (the WebSocket frames and the REST calls share these).

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/models"
)

// Read marks ids (or all) of uid read and pushes the new counts to every
// connection of uid. It returns how many messages changed.
func (s *Service) Read(ctx context.Context, uid uint64, ids []uint64, all bool) (int64, error) {
	var (
		n   int64
		u   frames.Unread
		err error
	)
	if all {
		// Everything the user was shown is marked, even what is still
		// being committed (see Deliver).
		if _, err = s.Delivery.Settle(ctx, uid); err != nil {
			return 0, err
		}
		// What is still in flight now (a slow commit, a worker that died)
		// is marked read when it commits, so this read-all holds for it.
		if err = s.readLate(ctx, uid, nil); err != nil {
			return 0, err
		}
		if n, err = s.Repo.MarkAllRead(ctx, uid); err != nil {
			return 0, err
		}
		if b, err := s.Broadcasts.Unread(ctx, uid); err == nil {
			for _, k := range b {
				n += k
			}
		}
		s.Broadcasts.SetMark(ctx, uid, s.Clock.Now())
		// Rebuild rather than zero: a message stored meanwhile stays counted.
		if err = s.Delivery.Reset(ctx, uid); err != nil {
			return n, err
		}
		u, err = s.Delivery.Personal(ctx, uid)
	} else {
		var res models.ReadResult
		if _, err = s.Delivery.Settle(ctx, uid, ids...); err != nil { // pushed, perhaps not committed
			return 0, err
		}
		if err = s.readLate(ctx, uid, ids); err != nil {
			return 0, err
		}
		if res, err = s.Repo.MarkRead(ctx, uid, ids); err != nil {
			return 0, err
		}
		n = res.Updated
		if n < int64(len(ids)) { // the others may be broadcasts
			nb, err := s.Broadcasts.Read(ctx, uid, ids)
			if err != nil {
				return n, err
			}
			n += nb
		}
		u, err = s.Delivery.Adjust(ctx, uid, res.ByKind, res.Unacked)
	}
	if err == nil {
		u, err = s.Broadcasts.AddTo(ctx, uid, u)
	}
	if err != nil {
		return n, err
	}
	return n, s.Cluster.Push(ctx, uid, frames.UnreadFrame(u))
}

// Ack records that uid's client received ids and pushes the new counts.
func (s *Service) Ack(ctx context.Context, uid uint64, ids []uint64) (int64, error) {
	if _, err := s.Delivery.Settle(ctx, uid, ids...); err != nil { // pushed, perhaps not committed
		return 0, err
	}
	n, err := s.Repo.MarkAcked(ctx, uid, ids)
	if err != nil {
		return 0, err
	}

	if n == 0 {
		return 0, nil
	}
	u, err := s.Delivery.Adjust(ctx, uid, nil, n)
	if err == nil {
		u, err = s.Broadcasts.AddTo(ctx, uid, u)
	}
	if err != nil {
		return n, err
	}
	return n, s.Cluster.Push(ctx, uid, frames.UnreadFrame(u))
}

// MessagePage is a page of GET /api/v1/me/messages.
type MessagePage struct {
	Messages []json.RawMessage `json:"messages"`
	Next     *string           `json:"next"`
}

// ListMessages returns uid's messages and broadcasts newest first, before
// the message `before` when given.
func (s *Service) ListMessages(ctx context.Context, uid uint64, unreadOnly bool, before string, limit int) (*MessagePage, error) {
	// A message already pushed is listed, even while its commit runs.
	if _, err := s.Delivery.Settle(ctx, uid); err != nil {
		return nil, err
	}
	q := models.ListQuery{UID: uid, UnreadOnly: unreadOnly, Limit: limit + 1}
	if before != "" {
		id, ok := ids.Parse(before)
		if !ok {
			return nil, apierr.Invalid("before must be a message id")
		}
		key, err := s.Repo.SortKeyOf(ctx, uid, id)
		if errors.Is(err, models.ErrNoMessage) {
			if b, berr := s.Repo.GetBroadcast(ctx, id); berr == nil && b.Status == models.BroadcastSent {
				key, err = b.ID, nil
			} else {
				return nil, apierr.Invalid("before names no message of yours")
			}
		}
		if err != nil {
			return nil, err
		}
		q.BeforeSortKey = key
	}
	rows, err := s.Repo.ListMessages(ctx, q)
	if err != nil {
		return nil, err
	}
	bq, err := s.Broadcasts.Query(ctx, uid)
	if err != nil {
		return nil, err
	}
	mark := bq.After
	if !unreadOnly {
		bq.UnreadOnly = false
		bq.After = s.Broadcasts.HistoryStart(ctx, uid)
	}
	bq.BeforeID, bq.Limit = q.BeforeSortKey, limit+1
	bcasts, err := s.Repo.ListBroadcasts(ctx, bq)
	if err != nil {
		return nil, err
	}
	ids := make([]uint64, len(bcasts))
	for i := range bcasts {
		ids[i] = bcasts[i].ID
	}
	reads, err := s.Repo.BroadcastReads(ctx, uid, ids)
	if err != nil {
		return nil, err
	}
	type item struct {
		key uint64
		id  uint64
		js  json.RawMessage
	}
	items := make([]item, 0, len(rows)+len(bcasts))
	for i := range rows {
		items = append(items, item{rows[i].SortKey, rows[i].ID, storedMessageJSON(&rows[i])})
	}
	for i := range bcasts {
		b := &bcasts[i]
		read := reads[b.ID] || (b.SentAt != nil && !b.SentAt.After(mark))
		items = append(items, item{b.ID, b.ID, frames.MustJSON(storedMessage{ID: strconv.FormatUint(b.ID, 10), Kind: b.Kind, Body: json.RawMessage(b.Body),
			TS: b.SentAt.UnixMilli(), Count: 1, Read: read, Acked: read, CreatedAt: b.CreatedAt, Broadcast: true})})
	}
	slices.SortFunc(items, func(x, y item) int { return cmp.Compare(y.key, x.key) })
	page := &MessagePage{Messages: make([]json.RawMessage, 0, min(len(items), limit))}
	if len(items) > limit {
		items = items[:limit]
		next := strconv.FormatUint(items[limit-1].id, 10)
		page.Next = &next
	}
	for _, it := range items {
		page.Messages = append(page.Messages, it.js)
	}
	return page, nil
}

type storedMessage struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	Body      json.RawMessage `json:"body"`
	TS        int64           `json:"ts"`
	Count     uint32          `json:"count"`
	Read      bool            `json:"read"`
	Acked     bool            `json:"acked"`
	CreatedAt time.Time       `json:"created_at"`
	Broadcast bool            `json:"broadcast,omitempty"`
}

func storedMessageJSON(m *models.Message) json.RawMessage {
	return frames.MustJSON(storedMessage{ID: ids.Format(m.ID), Kind: m.Kind, Body: json.RawMessage(m.Body), TS: m.UpdatedAt.UnixMilli(),
		Count: max(m.Count, 1), Read: m.IsRead, Acked: m.IsSent, CreatedAt: m.CreatedAt})
}

// readLate records the messages among ids (all of uid's when ids is nil)
// that are still in flight after the read's wait, so their delivery marks
// them read when it commits (delivery.Service.ReadLate).
func (s *Service) readLate(ctx context.Context, uid uint64, ids []uint64) error {
	var want []string
	for _, id := range ids {
		want = append(want, strconv.FormatUint(id, 10))
	}
	left, err := s.Delivery.Flying(ctx, uid, want)
	if err != nil {
		return err
	}
	return s.Delivery.ReadLate(ctx, uid, left)
}
