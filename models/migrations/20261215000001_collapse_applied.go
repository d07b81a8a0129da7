package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// collapse_applied holds the ids of messages with a collapse key that were
// stored or merged, each with the row it went into, so a retried delivery
// of one applies nothing (Repo.UpsertCollapsed). One table, not a shard
// per user range: its rows live a retry horizon (pruned by retention on
// applied_at) and are looked up by message id. With a shard map every
// shard server has one too (EnsureShards).
func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, collapseAppliedDDL)
		return err
	}, func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS collapse_applied")
		return err
	})
}
