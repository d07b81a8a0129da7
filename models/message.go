package models

import (
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// ShardCount is the number of message shard tables (user_push_msg_0..127).
const ShardCount = 128

// ShardTable names the shard holding uid's messages.
func ShardTable(uid uint64) string {
	return fmt.Sprintf("user_push_msg_%d", uid%ShardCount)
}

// Message is one row of a message shard. The table is chosen per query
// with ModelTableExpr; the name in the tag is only bun's default.
type Message struct {
	bun.BaseModel `bun:"table:user_push_msg_0,alias:m"`

	ID          uint64    `bun:"id,pk"`
	ToUID       uint64    `bun:"to_uid"`
	Kind        string    `bun:"kind"`
	Body        string    `bun:"body"`
	CollapseKey string    `bun:"collapse_key"`
	Count       uint32    `bun:"count"`
	IsSent      bool      `bun:"is_sent"`
	IsRead      bool      `bun:"is_read"`
	SortKey     uint64    `bun:"sort_key"` // id at creation; moves up when a collapse re-pushes it
	CreatedAt   time.Time `bun:"created_at"`
	UpdatedAt   time.Time `bun:"updated_at"`
}

// LastSeen is the uid → last seen table.
type LastSeen struct {
	bun.BaseModel `bun:"table:user_last_seen"`

	UID      uint64    `bun:"uid,pk"`
	LastSeen time.Time `bun:"last_seen"`
}

// ConnEvent is one row of the connection log.
type ConnEvent struct {
	bun.BaseModel `bun:"table:push_conn_log"`

	ID         uint64    `bun:"id,pk,autoincrement"`
	UID        uint64    `bun:"uid"`
	ConnID     string    `bun:"conn_id"`
	InstanceID string    `bun:"instance_id"`
	Transport  string    `bun:"transport"`
	Role       string    `bun:"role"`
	Event      string    `bun:"event"` // connect | disconnect
	RemoteAddr string    `bun:"remote_addr"`
	At         time.Time `bun:"at"`
}

// ShardDDL creates one shard. idx_unread serves "this user's unread, newest
// first"; idx_user serves the full history; idx_created serves retention.
const ShardDDL = `CREATE TABLE IF NOT EXISTS %s (
  id BIGINT UNSIGNED NOT NULL,
  to_uid BIGINT UNSIGNED NOT NULL,
  kind VARCHAR(32) NOT NULL,
  body MEDIUMTEXT NOT NULL,
  collapse_key VARCHAR(128) NOT NULL DEFAULT '',
  count INT UNSIGNED NOT NULL DEFAULT 1,
  is_sent TINYINT(1) NOT NULL DEFAULT 0,
  is_read TINYINT(1) NOT NULL DEFAULT 0,
  sort_key BIGINT UNSIGNED NOT NULL,
  created_at DATETIME(3) NOT NULL,
  updated_at DATETIME(3) NOT NULL,
  PRIMARY KEY (id),
  KEY idx_unread (to_uid, is_read, sort_key),
  KEY idx_user (to_uid, sort_key),
  KEY idx_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`
