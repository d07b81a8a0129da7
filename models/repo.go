package models

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"
)

// ErrNoMessage is a message id that is not the user's.
var ErrNoMessage = errors.New("no such message")

// Repo runs the queries on the message shards and the side tables.
// Safe for concurrent use.
type Repo struct {
	DB *bun.DB
	// Shards, when set, places the shard tables on other servers
	// (PUSHDESK_MYSQL_SHARDS); nil keeps them all in DB.
	Shards *Shards
}

// shardDB is the database holding shard's table.
func (r *Repo) shardDB(shard uint64) *bun.DB {
	if r.Shards == nil {
		return r.DB
	}
	return r.Shards.Of(int(shard % ShardCount)).DB
}

// userDB is the database holding uid's messages.
func (r *Repo) userDB(uid uint64) *bun.DB { return r.shardDB(uid % ShardCount) }

// ServerCount is how many databases hold shard tables (1 without a map).
func (r *Repo) ServerCount() int {
	if r.Shards == nil {
		return 1
	}
	return len(r.Shards.Servers)
}

// ServerOf is the index (below ServerCount) of the database holding uid's
// messages.
func (r *Repo) ServerOf(uid uint64) int {
	if r.Shards == nil {
		return 0
	}
	return r.Shards.IndexOf(int(uid % ShardCount))
}

// shardDBs are the databases holding shard tables, each once.
func (r *Repo) shardDBs() []*bun.DB {
	if r.Shards == nil {
		return []*bun.DB{r.DB}
	}
	out := make([]*bun.DB, len(r.Shards.Servers))
	for i, s := range r.Shards.Servers {
		out[i] = s.DB
	}
	return out
}

// shardExpr is the table expression for SELECT and UPDATE (aliased m).
func shardExpr(uid uint64) (string, bun.Ident) { return "? AS m", bun.Ident(ShardTable(uid)) }

// InsertMessages writes rows, grouped by shard, in one transaction per
// database holding their shards (one, without a shard map) so a batch
// costs one commit there. Rows already present (same id) are skipped,
// which makes a retried delivery harmless. With rows on several servers,
// each server's part commits or fails on its own and the errors are
// joined; callers that must tell which part failed submit one server's
// rows at a time (see ServerOf).
func (r *Repo) InsertMessages(ctx context.Context, rows []Message) error {
	if len(rows) == 0 {
		return nil
	}
	if r.ServerCount() == 1 {
		return r.insertOn(ctx, r.userDB(rows[0].ToUID), rows)
	}
	parts := make([][]Message, r.ServerCount())
	for _, m := range rows {
		i := r.ServerOf(m.ToUID)
		parts[i] = append(parts[i], m)
	}
	var errs []error
	for i, part := range parts {
		if len(part) > 0 {
			if err := r.insertOn(ctx, r.Shards.Servers[i].DB, part); err != nil {
				errs = append(errs, fmt.Errorf("shard server %s: %w", r.Shards.Servers[i].Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// insertOn is InsertMessages for rows whose shards are all in db.
func (r *Repo) insertOn(ctx context.Context, db *bun.DB, rows []Message) error {
	byShard := make(map[uint64][]Message)
	for _, m := range rows {
		s := m.ToUID % ShardCount
		byShard[s] = append(byShard[s], m)
	}
	shards := make([]uint64, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	// A fixed order keeps two concurrent batches from deadlocking.
	sort.Slice(shards, func(i, j int) bool { return shards[i] < shards[j] })
	// The INSERTs go as multi-statement execs inside one transaction: one
	// round trip per ~maxExecBytes of SQL, one commit. Rows are split so no
	// statement nears MariaDB's max_allowed_packet (16 MiB by default; a
	// 16 KiB body can render to 32 KiB once escaped). The SQL is rendered
	// here rather than by bun's InsertQuery: a batch spans dozens of shard
	// tables, and bun's per-query reflection was ~7% of the process's CPU
	// under load.
	buf := insertBufs.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxExecBytes+64<<10 {
			insertBufs.Put(buf)
		}
	}()
	cur := (*buf)[:0]
	var execs []string
	for _, s := range shards {
		batch := byShard[s]
		for len(batch) > 0 {
			n, size := 0, 0
			for n < len(batch) && (n == 0 || size+len(batch[n].Body)*2 < maxExecBytes) {
				size += len(batch[n].Body)*2 + 256
				n++
			}
			mark := len(cur)
			cur = r.appendInsert(cur, s, batch[:n])
			batch = batch[n:]
			if mark > 0 && len(cur) > maxExecBytes { // this statement starts the next exec
				execs = append(execs, string(cur[:mark]))
				cur = append(cur[:0], cur[mark:]...)
			}
		}
	}
	*buf = cur
	if len(execs) == 0 { // the usual case: the whole transaction in one round trip
		return execTx(ctx, db, cur, len(rows), len(shards))
	}
	execs = append(execs, string(cur))
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, q := range execs {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("insert %d rows into %d shards: %w", len(rows), len(shards), err)
			}
		}
		return nil
	})
}

// execTx runs stmts (';'-terminated) as one transaction in a single
// multi-statement exec. MariaDB stops at the first failing statement and
// leaves the transaction open, so after an error the connection is
// dropped (the server rolls back) rather than returned to the pool.
func execTx(ctx context.Context, db *bun.DB, stmts []byte, nrows, nshards int) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("insert %d rows: %w", nrows, err)
	}
	defer conn.Close()
	const begin, commit = "START TRANSACTION;", "COMMIT"
	var q strings.Builder
	q.Grow(len(begin) + len(stmts) + len(commit))
	q.WriteString(begin)
	q.Write(stmts)
	q.WriteString(commit)
	if _, err = conn.ExecContext(ctx, q.String()); err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return fmt.Errorf("insert %d rows into %d shards: %w", nrows, nshards, err)
	}
	return nil
}

// insertBufs holds buffers for rendering InsertMessages' SQL.
var insertBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// insertColumns are Message's columns in the order appendInsert renders
// their values.
const insertColumns = "(`id`, `to_uid`, `kind`, `body`, `collapse_key`, `count`, `is_sent`, `is_read`, `sort_key`, `created_at`, `updated_at`)"

// appendInsert renders "INSERT IGNORE INTO <shard table> (...) VALUES
// (...), ...;" for rows, quoting values with the database's dialect.
func (r *Repo) appendInsert(b []byte, shard uint64, rows []Message) []byte {
	d := r.DB.Dialect()
	b = append(b, "INSERT IGNORE INTO "...)
	b = append(b, ShardTable(shard)...)
	b = append(b, ' ')
	b = append(b, insertColumns...)
	b = append(b, " VALUES "...)
	for i := range rows {
		m := &rows[i]
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, '(')
		b = strconv.AppendUint(b, m.ID, 10)
		b = append(b, ", "...)
		b = strconv.AppendUint(b, m.ToUID, 10)
		b = append(b, ", "...)
		b = appendSQLString(b, d, m.Kind)
		b = append(b, ", "...)
		b = appendSQLString(b, d, m.Body)
		b = append(b, ", "...)
		b = appendSQLString(b, d, m.CollapseKey)
		b = append(b, ", "...)
		b = strconv.AppendUint(b, uint64(m.Count), 10)
		b = append(b, ", "...)
		b = d.AppendBool(b, m.IsSent)
		b = append(b, ", "...)
		b = d.AppendBool(b, m.IsRead)
		b = append(b, ", "...)
		b = strconv.AppendUint(b, m.SortKey, 10)
		b = append(b, ", "...)
		b = d.AppendTime(b, m.CreatedAt)
		b = append(b, ", "...)
		b = d.AppendTime(b, m.UpdatedAt)
		b = append(b, ')')
	}
	return append(b, ';')
}

// appendSQLString quotes s as d does for MySQL (' doubled, \\ escaped, NUL
// dropped), copying the runs between those bytes whole rather than rune
// by rune. Invalid UTF-8, which d repairs rune by rune, goes through d.
func appendSQLString(b []byte, d schema.Dialect, s string) []byte {
	if !utf8.ValidString(s) {
		return d.AppendString(b, s)
	}
	b = append(b, '\'')
	for {
		i := strings.IndexAny(s, "'\\\x00")
		if i < 0 {
			break
		}
		b = append(b, s[:i]...)
		switch s[i] {
		case '\'':
			b = append(b, "''"...)
		case '\\':
			b = append(b, `\\`...)
		}
		s = s[i+1:]
	}
	b = append(b, s...)
	return append(b, '\'')
}

// maxExecBytes caps the SQL sent in one exec.
const maxExecBytes = 4 << 20

// UnreadCounts returns uid's unread count per kind and how many of those
// no client has acknowledged.
func (r *Repo) UnreadCounts(ctx context.Context, uid uint64) (byKind map[string]int64, unacked int64, err error) {
	var rows []struct {
		Kind    string `bun:"kind"`
		N       int64  `bun:"n"`
		Unacked int64  `bun:"unacked"`
	}
	expr, table := shardExpr(uid)
	err = r.userDB(uid).NewSelect().TableExpr(expr, table).
		ColumnExpr("m.kind, COUNT(*) AS n, CAST(COALESCE(SUM(m.is_sent = 0), 0) AS SIGNED) AS unacked").
		Where("m.to_uid = ? AND m.is_read = 0", uid).
		GroupExpr("m.kind").Scan(ctx, &rows)
	if err != nil {
		return nil, 0, fmt.Errorf("count unread of %d: %w", uid, err)
	}
	byKind = make(map[string]int64, len(rows))
	for _, row := range rows {
		byKind[row.Kind] = row.N
		unacked += row.Unacked
	}
	return byKind, unacked, nil
}

// ListQuery selects a page of a user's messages, newest first.
type ListQuery struct {
	UID        uint64
	UnreadOnly bool
	// BeforeSortKey, when non-zero, returns only messages older than it.
	BeforeSortKey uint64
	Limit         int
}

// ListMessages returns a page of messages, newest first.
func (r *Repo) ListMessages(ctx context.Context, q ListQuery) ([]Message, error) {
	var out []Message
	expr, table := shardExpr(q.UID)
	sel := r.userDB(q.UID).NewSelect().Model(&out).ModelTableExpr(expr, table).Where("m.to_uid = ?", q.UID)
	if q.UnreadOnly {
		sel = sel.Where("m.is_read = 0")
	}
	if q.BeforeSortKey > 0 {
		sel = sel.Where("m.sort_key < ?", q.BeforeSortKey)
	}
	if err := sel.OrderExpr("m.sort_key DESC").Limit(int64(q.Limit)).Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("list messages of %d: %w", q.UID, err)
	}
	return out, nil
}

// ListResume returns what a stream that last saw message after has
// missed, oldest first: every message of uid with a sort key above after,
// read or not, and the unread ones in (from, after] other than after
// itself, which a push that overtook them may have hidden. At most limit.
func (r *Repo) ListResume(ctx context.Context, uid, after, from uint64, limit int) ([]Message, error) {
	var out []Message
	expr, table := shardExpr(uid)
	err := r.userDB(uid).NewSelect().Model(&out).ModelTableExpr(expr, table).
		Where("m.to_uid = ? AND m.sort_key > ? AND (m.sort_key > ? OR (m.is_read = 0 AND m.id <> ?))", uid, from, after, after).
		OrderExpr("m.sort_key ASC").Limit(int64(limit)).Scan(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("list messages of %d to resume after %d: %w", uid, after, err)
	}
	return out, nil
}

// SortKeyOf returns the sort key of uid's message id, or ErrNoMessage.
func (r *Repo) SortKeyOf(ctx context.Context, uid, id uint64) (uint64, error) {
	var key uint64
	expr, table := shardExpr(uid)
	err := r.userDB(uid).NewSelect().TableExpr(expr, table).Column("m.sort_key").
		Where("m.id = ? AND m.to_uid = ?", id, uid).Scan(ctx, &key)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNoMessage
	}
	if err != nil {
		return 0, fmt.Errorf("find message %d of %d: %w", id, uid, err)
	}
	return key, nil
}

// ReadResult says what a read changed, for the unread counters.
type ReadResult struct {
	Updated int64
	ByKind  map[string]int64 // newly read per kind
	Unacked int64            // of those, how many were not acknowledged
}

// MarkRead marks uid's messages ids read (and acknowledged). Ids that are
// not uid's, or already read, are left alone and not counted.
func (r *Repo) MarkRead(ctx context.Context, uid uint64, ids []uint64) (ReadResult, error) {
	res := ReadResult{ByKind: map[string]int64{}}
	if len(ids) == 0 {
		return res, nil
	}
	err := r.userDB(uid).RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var rows []struct {
			Kind   string `bun:"kind"`
			IsSent bool   `bun:"is_sent"`
		}
		expr, table := shardExpr(uid)
		// FOR UPDATE: two concurrent reads of one id must not both count it.
		if err := tx.NewSelect().TableExpr(expr, table).Column("m.kind", "m.is_sent").
			Where("m.to_uid = ? AND m.is_read = 0 AND m.id IN (?)", uid, bun.In(ids)).
			For("UPDATE").Scan(ctx, &rows); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		if _, err := tx.NewUpdate().TableExpr(expr, table).
			Set("m.is_read = 1, m.is_sent = 1, m.updated_at = ?", time.Now().UTC()).
			Where("m.to_uid = ? AND m.is_read = 0 AND m.id IN (?)", uid, bun.In(ids)).Exec(ctx); err != nil {
			return err
		}
		for _, row := range rows {
			res.ByKind[row.Kind]++
			res.Updated++
			if !row.IsSent {
				res.Unacked++
			}
		}
		return nil
	})
	if err != nil {
		return ReadResult{}, fmt.Errorf("mark read for %d: %w", uid, err)
	}
	return res, nil
}

// MarkAllRead marks every unread message of uid read.
func (r *Repo) MarkAllRead(ctx context.Context, uid uint64) (int64, error) {
	expr, table := shardExpr(uid)
	res, err := r.userDB(uid).NewUpdate().TableExpr(expr, table).
		Set("m.is_read = 1, m.is_sent = 1, m.updated_at = ?", time.Now().UTC()).
		Where("m.to_uid = ? AND m.is_read = 0", uid).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("mark all read for %d: %w", uid, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// MarkAcked records that a client of uid received ids. Only unread,
// unacknowledged messages change, so the count is what the unacked
// counter loses.
func (r *Repo) MarkAcked(ctx context.Context, uid uint64, ids []uint64) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	expr, table := shardExpr(uid)
	res, err := r.userDB(uid).NewUpdate().TableExpr(expr, table).
		Set("m.is_sent = 1, m.updated_at = ?", time.Now().UTC()).
		Where("m.to_uid = ? AND m.is_sent = 0 AND m.id IN (?)", uid, bun.In(ids)).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("mark acked for %d: %w", uid, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// UpsertLastSeen records last-seen times, keeping the later one.
func (r *Repo) UpsertLastSeen(ctx context.Context, rows []LastSeen) error {
	if len(rows) == 0 {
		return nil
	}
	_, err := r.DB.NewInsert().Model(&rows).
		On("DUPLICATE KEY UPDATE last_seen = GREATEST(last_seen, VALUES(last_seen))").Exec(ctx)
	if err != nil {
		return fmt.Errorf("upsert %d last-seen rows: %w", len(rows), err)
	}
	return nil
}

// InsertConnEvents appends to the connection log.
func (r *Repo) InsertConnEvents(ctx context.Context, rows []ConnEvent) error {
	if len(rows) == 0 {
		return nil
	}
	if _, err := r.DB.NewInsert().Model(&rows).Exec(ctx); err != nil {
		return fmt.Errorf("insert %d connection events: %w", len(rows), err)
	}
	return nil
}

// LastSeen returns the stored last-seen rows of uids (absent: never seen).
func (r *Repo) LastSeen(ctx context.Context, uids []uint64) ([]LastSeen, error) {
	var rows []LastSeen
	if err := r.DB.NewSelect().Model(&rows).Where("uid IN (?)", bun.In(uids)).Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("read last seen of %d users: %w", len(uids), err)
	}
	return rows, nil
}

// DeleteOlder deletes up to limit messages created before cutoff from one
// shard and returns how many went. Before it deletes, it hands the users
// who are about to lose unread messages to before (when there are any);
// an error from before deletes nothing.
func (r *Repo) DeleteOlder(ctx context.Context, shard int, cutoff time.Time, limit int, before func(unreadOf []uint64) error) (int, error) {
	table := fmt.Sprintf("user_push_msg_%d", shard)
	var rows []struct {
		ID     uint64 `bun:"id"`
		ToUID  uint64 `bun:"to_uid"`
		IsRead bool   `bun:"is_read"`
	}
	if err := r.shardDB(uint64(shard)).NewSelect().TableExpr("? AS m", bun.Ident(table)).Column("m.id", "m.to_uid", "m.is_read").
		Where("m.created_at < ?", cutoff).Limit(int64(limit)).Scan(ctx, &rows); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	if len(rows) == 0 {
		return 0, nil
	}
	ids := make([]uint64, len(rows))
	seen := map[uint64]bool{}
	var unreadOf []uint64
	for i, row := range rows {
		ids[i] = row.ID
		if !row.IsRead && !seen[row.ToUID] {
			seen[row.ToUID] = true
			unreadOf = append(unreadOf, row.ToUID)
		}
	}
	if len(unreadOf) > 0 && before != nil {
		if err := before(unreadOf); err != nil {
			return 0, err
		}
	}
	res, err := r.shardDB(uint64(shard)).NewDelete().TableExpr("?", bun.Ident(table)).Where("id IN (?)", bun.In(ids)).Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
