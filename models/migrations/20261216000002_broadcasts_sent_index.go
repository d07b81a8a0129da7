package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// An index for Repo.NewestSent: the newest sent broadcast, read once per
// broadcast generation by every instance's connects.
func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "ALTER TABLE broadcasts ADD KEY IF NOT EXISTS idx_status_sent (status, sent_at)")
		return err
	}, func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "ALTER TABLE broadcasts DROP KEY IF EXISTS idx_status_sent")
		return err
	})
}
