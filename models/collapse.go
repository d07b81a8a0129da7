package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// CollapseApplied records that a message with a collapse key was applied:
// stored as a new row, or merged into an unread one (RowID). UpsertCollapsed
// writes it in the transaction that applies the message, so each message
// applies once however often, and in whatever order, its delivery runs.
type CollapseApplied struct {
	bun.BaseModel `bun:"table:collapse_applied"`

	ID        uint64    `bun:"id,pk"` // the message
	ToUID     uint64    `bun:"to_uid"`
	RowID     uint64    `bun:"row_id"` // the shard row it went into
	AppliedAt time.Time `bun:"applied_at"`
}

// UpsertCollapsed applies m, a message with a collapse key: when its user
// has an unread message of the same kind and key, m merges into it (its
// count goes up by one; if m has the highest sort key merged so far, the
// row takes m's body, time and place in the order), else m is stored as a
// new row. It returns the row m went into and applied true.
//
// A message applies once: its id is recorded in collapse_applied in the
// same transaction. A repeat (a retried delivery, of the row's newest
// message or any other, read or not) changes nothing and returns applied
// false with the row m went into as it is now (zero when that row is gone).
// The records are kept for a retry horizon and then pruned
// (DeleteCollapseAppliedBefore); past it a repeat of m merges again.
// A transaction that fails (a deadlock victim, say) is rolled back whole,
// record and all, so the delivery's retry applies m afresh.
func (r *Repo) UpsertCollapsed(ctx context.Context, m Message) (row Message, applied bool, err error) {
	expr, table := shardExpr(m.ToUID)
	// collapse_applied lives beside the shard (every shard server has
	// one), so the record and the row commit in one transaction there.
	err = r.userDB(m.ToUID).RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// First the record: a concurrent repeat of m waits here for this
		// transaction and then finds it. RowID assumes a new row and is
		// corrected below if m merges.
		rec := CollapseApplied{ID: m.ID, ToUID: m.ToUID, RowID: m.ID, AppliedAt: time.Now().UTC()}
		res, err := tx.NewInsert().Model(&rec).Ignore().Exec(ctx)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 { // applied before
			err := tx.NewSelect().Model(&row).ModelTableExpr(expr, table).
				Join("JOIN collapse_applied AS a ON a.row_id = m.id").
				Where("a.id = ? AND m.to_uid = ?", m.ID, m.ToUID).Scan(ctx)
			if errors.Is(err, sql.ErrNoRows) { // purged since
				return nil
			}
			return err
		}
		applied = true
		// Every message reaching this point is new to the row, so a merge
		// counts it whatever its sort key; only the newest sets the body.
		// A duplicate on the primary key is m's own row, stored before
		// collapse_applied recorded it (or past the horizon): as before,
		// that, and the row whose newest message is m, count nothing.
		_, err = tx.NewInsert().Model(&m).ModelTableExpr(ShardTable(m.ToUID)).
			On("DUPLICATE KEY UPDATE").
			Set("count = count + IF(id = VALUES(id) OR sort_key = VALUES(sort_key), 0, 1)").
			Set("body = IF(VALUES(sort_key) > sort_key, VALUES(body), body)").
			Set("updated_at = IF(VALUES(sort_key) > sort_key, VALUES(updated_at), updated_at)").
			Set("sort_key = GREATEST(sort_key, VALUES(sort_key))"). // last: the SETs above read the old value
			Exec(ctx)
		if err != nil {
			return err
		}
		// The first consistent read of the transaction: it sees the rows
		// committed before it and this transaction's own write.
		if err := tx.NewSelect().Model(&row).ModelTableExpr(expr, table).
			Where("m.to_uid = ? AND (m.id = ? OR m.collapse_open = CONCAT(?, '/', ?))", m.ToUID, m.ID, m.Kind, m.CollapseKey).
			OrderExpr("m.sort_key DESC").Limit(1).Scan(ctx); err != nil {
			return err
		}
		if row.ID == m.ID {
			return nil
		}
		_, err = tx.NewUpdate().Model((*CollapseApplied)(nil)).Set("row_id = ?", row.ID).Where("id = ?", m.ID).Exec(ctx)
		return err
	})
	if err != nil {
		return Message{}, false, fmt.Errorf("upsert collapsed message %d for %d: %w", m.ID, m.ToUID, err)
	}
	return row, applied, nil
}

// DeleteCollapseAppliedBefore forgets up to limit collapse_applied records
// written before cutoff on the database holding shards number server
// (below ServerCount) and returns how many went.
func (r *Repo) DeleteCollapseAppliedBefore(ctx context.Context, server int, cutoff time.Time, limit int) (int, error) {
	res, err := r.shardDBs()[server].NewDelete().Model((*CollapseApplied)(nil)).
		Where("applied_at < ?", cutoff).OrderExpr("applied_at").Limit(int64(limit)).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete collapse records before %s: %w", cutoff.Format(time.RFC3339), err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
