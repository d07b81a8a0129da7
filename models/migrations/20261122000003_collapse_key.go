package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// collapse_open is (kind, collapse_key) while a collapsible message is
// unread and NULL otherwise; unique per user, it lets one upsert merge a
// new message into the open one without a race.
func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		return eachShard(ctx, db, shardSteps[1])
	}, func(ctx context.Context, db *bun.DB) error {
		return eachShard(ctx, db, func(table string) string {
			return "ALTER TABLE " + table + " DROP KEY IF EXISTS uq_collapse, DROP COLUMN IF EXISTS collapse_open"
		})
	})
}
