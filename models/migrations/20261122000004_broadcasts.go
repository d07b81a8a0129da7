package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// Broadcasts are stored once (never a row per user). Per-user state is
// only what differs from the default: segment membership set through the
// API, and individual reads of broadcasts newer than the user's last seen.
func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		for _, q := range []string{
			`CREATE TABLE IF NOT EXISTS broadcasts (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  segment VARCHAR(64) NOT NULL,
  kind VARCHAR(32) NOT NULL,
  body MEDIUMTEXT NOT NULL,
  status VARCHAR(12) NOT NULL,
  send_at DATETIME(3) NULL,
  cron VARCHAR(64) NOT NULL DEFAULT '',
  parent_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
  created_at DATETIME(3) NOT NULL,
  sent_at DATETIME(3) NULL,
  KEY idx_segment_sent (segment, status, sent_at),
  KEY idx_status (status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
			`CREATE TABLE IF NOT EXISTS user_segments (
  uid BIGINT UNSIGNED NOT NULL,
  segment VARCHAR(64) NOT NULL,
  PRIMARY KEY (uid, segment),
  KEY idx_segment (segment, uid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
			`CREATE TABLE IF NOT EXISTS broadcast_reads (
  uid BIGINT UNSIGNED NOT NULL,
  broadcast_id BIGINT UNSIGNED NOT NULL,
  read_at DATETIME(3) NOT NULL,
  PRIMARY KEY (uid, broadcast_id)
) ENGINE=InnoDB`,
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}, func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS broadcasts, user_segments, broadcast_reads")
		return err
	})
}
