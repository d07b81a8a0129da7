package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// cluster_identity holds one row: the id of the Pushdesk cluster this
// database belongs to. Redis holds the same id (pd:cluster), so an
// instance pointed at a Redis and a MySQL of two different clusters
// refuses to start (cluster.CheckIdentity).
func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS cluster_identity (
  one TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  id VARCHAR(64) NOT NULL,
  created_at DATETIME(3) NOT NULL
) ENGINE=InnoDB`)
		return err
	}, func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS cluster_identity")
		return err
	})
}
