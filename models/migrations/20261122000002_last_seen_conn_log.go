package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		for _, q := range []string{
			`CREATE TABLE IF NOT EXISTS user_last_seen (
  uid BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  last_seen DATETIME(3) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
			`CREATE TABLE IF NOT EXISTS push_conn_log (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  uid BIGINT UNSIGNED NOT NULL,
  conn_id VARCHAR(40) NOT NULL,
  instance_id VARCHAR(64) NOT NULL,
  transport VARCHAR(8) NOT NULL,
  role VARCHAR(8) NOT NULL,
  event VARCHAR(12) NOT NULL,
  remote_addr VARCHAR(64) NOT NULL DEFAULT '',
  at DATETIME(3) NOT NULL,
  KEY idx_uid_at (uid, at),
  KEY idx_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}, func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS user_last_seen, push_conn_log")
		return err
	})
}
