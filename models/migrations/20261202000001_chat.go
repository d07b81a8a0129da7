package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// The support chat: conversations, their lines, who held each one (the
// hand-out log, and who may read the history), and console logins.
// Chat lines are one table, not sharded like notifications: a support
// desk writes thousands of lines a day, not millions, and a
// conversation's lines are read together by conversation id.
func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		for _, q := range []string{
			`CREATE TABLE IF NOT EXISTS chat_conversations (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  agent_id BIGINT UNSIGNED NULL,
  agent_name VARCHAR(128) NOT NULL DEFAULT '',
  status VARCHAR(8) NOT NULL,
  opened_at DATETIME(3) NOT NULL,
  assigned_at DATETIME(3) NULL,
  closed_at DATETIME(3) NULL,
  last_msg_at DATETIME(3) NOT NULL,
  last_line_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
  last_text VARCHAR(255) NOT NULL DEFAULT '',
  agent_read_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
  KEY idx_user (user_id, status),
  KEY idx_agent (agent_id, status),
  KEY idx_status (status, opened_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
			`CREATE TABLE IF NOT EXISTS chat_lines (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  conversation_id BIGINT UNSIGNED NOT NULL,
  sender VARCHAR(5) NOT NULL,
  sender_id BIGINT UNSIGNED NOT NULL,
  sender_name VARCHAR(128) NOT NULL DEFAULT '',
  text TEXT NOT NULL,
  client_msg_id VARCHAR(64) NULL,
  created_at DATETIME(3) NOT NULL,
  KEY idx_conversation (conversation_id, id),
  UNIQUE KEY uniq_client_msg (sender, sender_id, client_msg_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
			`CREATE TABLE IF NOT EXISTS chat_holds (
  conversation_id BIGINT UNSIGNED NOT NULL,
  agent_id BIGINT UNSIGNED NOT NULL,
  reason VARCHAR(16) NOT NULL,
  at DATETIME(3) NOT NULL,
  PRIMARY KEY (conversation_id, agent_id, at),
  KEY idx_agent (agent_id, at)
) ENGINE=InnoDB`,
			`CREATE TABLE IF NOT EXISTS chat_agents (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(254) NOT NULL,
  name VARCHAR(128) NOT NULL,
  password_hash VARCHAR(100) NOT NULL,
  disabled TINYINT(1) NOT NULL DEFAULT 0,
  created_at DATETIME(3) NOT NULL,
  UNIQUE KEY uniq_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}, func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS chat_conversations, chat_lines, chat_holds, chat_agents")
		return err
	})
}
