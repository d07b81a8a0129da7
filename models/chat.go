package models

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/uptrace/bun"
)

// Conversation statuses.
const (
	ConvWaiting = "waiting"
	ConvOpen    = "open"
	ConvClosed  = "closed"
)

// Line senders.
const (
	SenderUser  = "user"
	SenderAgent = "agent"
)

// ErrNoConversation is a conversation id that names nothing.
var ErrNoConversation = errors.New("no such conversation")

// ErrNoAgent is an agent login that does not exist.
var ErrNoAgent = errors.New("no such agent")

// ErrAgentExists is an agent login whose email is taken.
var ErrAgentExists = errors.New("an agent with this email exists")

// Conversation is one support conversation of a user.
type Conversation struct {
	bun.BaseModel `bun:"table:chat_conversations"`

	ID          uint64     `bun:"id,pk"`
	UserID      uint64     `bun:"user_id"`
	AgentID     *uint64    `bun:"agent_id"`
	AgentName   string     `bun:"agent_name"`
	Status      string     `bun:"status"`
	OpenedAt    time.Time  `bun:"opened_at"`
	AssignedAt  *time.Time `bun:"assigned_at"`
	ClosedAt    *time.Time `bun:"closed_at"`
	LastMsgAt   time.Time  `bun:"last_msg_at"`
	LastLineID  uint64     `bun:"last_line_id"`
	LastText    string     `bun:"last_text"`
	AgentReadID uint64     `bun:"agent_read_id"`
}

// ChatLine is one line of a conversation.
type ChatLine struct {
	bun.BaseModel `bun:"table:chat_lines"`

	ID             uint64    `bun:"id,pk"`
	ConversationID uint64    `bun:"conversation_id"`
	Sender         string    `bun:"sender"` // SenderUser or SenderAgent
	SenderID       uint64    `bun:"sender_id"`
	SenderName     string    `bun:"sender_name"`
	Text           string    `bun:"text"`
	ClientMsgID    *string   `bun:"client_msg_id"`
	CreatedAt      time.Time `bun:"created_at"`
}

// ChatHold records that an agent was handed a conversation, and why.
type ChatHold struct {
	bun.BaseModel `bun:"table:chat_holds"`

	ConversationID uint64    `bun:"conversation_id,pk"`
	AgentID        uint64    `bun:"agent_id,pk"`
	Reason         string    `bun:"reason"`
	At             time.Time `bun:"at,pk"`
}

// ChatAgent is a console login.
type ChatAgent struct {
	bun.BaseModel `bun:"table:chat_agents"`

	ID           uint64    `bun:"id,pk,autoincrement"`
	Email        string    `bun:"email"`
	Name         string    `bun:"name"`
	PasswordHash string    `bun:"password_hash"`
	Disabled     bool      `bun:"disabled"`
	CreatedAt    time.Time `bun:"created_at"`
}

// ChatRepo runs the chat's queries. Safe for concurrent use.
type ChatRepo struct {
	DB *bun.DB
}

// CreateConversation inserts c.
func (r *ChatRepo) CreateConversation(ctx context.Context, c *Conversation) error {
	_, err := r.DB.NewInsert().Model(c).Exec(ctx)
	return err
}

// RestoreConversation inserts c unless a conversation with its id exists:
// a live conversation's row put back from the live state.
func (r *ChatRepo) RestoreConversation(ctx context.Context, c *Conversation) error {
	_, err := r.DB.NewInsert().Model(c).Ignore().Exec(ctx)
	return err
}

// DeleteConversation removes a conversation that never took a line and
// was never handed to an agent (an open that lost a race or failed).
func (r *ChatRepo) DeleteConversation(ctx context.Context, id uint64) error {
	_, err := r.DB.NewDelete().Model((*Conversation)(nil)).Where("id = ?", id).Where("last_line_id = 0").
		Where("assigned_at IS NULL").Exec(ctx)
	return err
}

// GetConversation returns conversation id, or ErrNoConversation.
func (r *ChatRepo) GetConversation(ctx context.Context, id uint64) (*Conversation, error) {
	c := new(Conversation)
	err := r.DB.NewSelect().Model(c).Where("id = ?", id).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoConversation
	}
	return c, err
}

// Assign records that agent holds conversation id since at, and why.
func (r *ChatRepo) Assign(ctx context.Context, id, agent uint64, agentName, reason string, at time.Time) error {
	_, err := r.assign(ctx, id, agent, agentName, reason, at, nil)
	return err
}

// AssignIf is Assign done only while the row still has the status and
// agent (nil: none) it was read with, so that a repair from an older
// reading cannot undo a hand-out recorded meanwhile; when it no longer
// has them nothing is written. It reports whether the row was changed.
func (r *ChatRepo) AssignIf(ctx context.Context, id, agent uint64, agentName, reason string, at time.Time, wasStatus string, wasAgent *uint64) (bool, error) {
	return r.assign(ctx, id, agent, agentName, reason, at, func(q *bun.UpdateQuery) *bun.UpdateQuery {
		return whereAgent(q.Where("status = ?", wasStatus), wasAgent)
	})
}

func (r *ChatRepo) assign(ctx context.Context, id, agent uint64, agentName, reason string, at time.Time, cond func(*bun.UpdateQuery) *bun.UpdateQuery) (bool, error) {
	changed := false
	err := r.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		q := tx.NewUpdate().Model((*Conversation)(nil)).
			Set("agent_id = ?", agent).Set("agent_name = ?", agentName).Set("status = ?", ConvOpen).
			Set("assigned_at = COALESCE(assigned_at, ?)", at).Set("agent_read_id = 0").
			Where("id = ?", id).Where("status <> ?", ConvClosed)
		if cond != nil {
			q = cond(q)
		}
		res, err := q.Exec(ctx)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if changed = n > 0; !changed && cond != nil {
			return nil // changed meanwhile: the newer hand-out stands
		}
		_, err = tx.NewInsert().Model(&ChatHold{ConversationID: id, AgentID: agent, Reason: reason, At: at}).Ignore().Exec(ctx)
		return err
	})
	return changed, err
}

func whereAgent(q *bun.UpdateQuery, agent *uint64) *bun.UpdateQuery {
	if agent == nil {
		return q.Where("agent_id IS NULL")
	}
	return q.Where("agent_id = ?", *agent)
}

// Unassign puts conversation id back into the waiting pool.
func (r *ChatRepo) Unassign(ctx context.Context, id uint64) error {
	_, err := r.unassign(ctx, id, func(q *bun.UpdateQuery) *bun.UpdateQuery { return q })
	return err
}

// UnassignIf is Unassign done only while the row is still open and held
// by wasAgent (see AssignIf). It reports whether the row was changed.
func (r *ChatRepo) UnassignIf(ctx context.Context, id uint64, wasAgent *uint64) (bool, error) {
	return r.unassign(ctx, id, func(q *bun.UpdateQuery) *bun.UpdateQuery {
		return whereAgent(q.Where("status = ?", ConvOpen), wasAgent)
	})
}

func (r *ChatRepo) unassign(ctx context.Context, id uint64, cond func(*bun.UpdateQuery) *bun.UpdateQuery) (bool, error) {
	res, err := cond(r.DB.NewUpdate().Model((*Conversation)(nil)).
		Set("agent_id = NULL").Set("agent_name = ''").Set("status = ?", ConvWaiting).
		Where("id = ?", id).Where("status <> ?", ConvClosed)).Exec(ctx)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// Close marks conversation id closed at at.
func (r *ChatRepo) Close(ctx context.Context, id uint64, at time.Time) error {
	_, err := r.DB.NewUpdate().Model((*Conversation)(nil)).
		Set("status = ?", ConvClosed).Set("closed_at = COALESCE(closed_at, ?)", at).
		Where("id = ?", id).Exec(ctx)
	return err
}

// Active lists every waiting or open conversation, oldest first: what
// the live state in Redis is rebuilt from.
func (r *ChatRepo) Active(ctx context.Context) ([]Conversation, error) {
	var cs []Conversation
	err := r.DB.NewSelect().Model(&cs).Where("status IN (?)", bun.In([]string{ConvWaiting, ConvOpen})).
		Order("opened_at", "id").Scan(ctx)
	return cs, err
}

// UserConversations lists uid's conversations, newest activity first.
func (r *ChatRepo) UserConversations(ctx context.Context, uid uint64, limit int) ([]Conversation, error) {
	var cs []Conversation
	err := r.DB.NewSelect().Model(&cs).Where("user_id = ?", uid).OrderExpr("last_msg_at DESC, id DESC").Limit(int64(limit)).Scan(ctx)
	return cs, err
}

// AgentConversations lists what an agent's console shows: the
// conversations agent holds, every waiting one (up to limit), and the
// last 20 it held before, newest activity first.
func (r *ChatRepo) AgentConversations(ctx context.Context, agent uint64, limit int) ([]Conversation, error) {
	var cs []Conversation
	err := r.DB.NewSelect().Model(&cs).
		Where("(status = ? AND agent_id = ?) OR status = ?", ConvOpen, agent, ConvWaiting).
		OrderExpr("last_msg_at DESC, id DESC").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, err
	}
	var past []Conversation
	err = r.DB.NewSelect().Model(&past).
		Where("id IN (SELECT conversation_id FROM chat_holds WHERE agent_id = ?)", agent).
		Where("NOT (status = ? AND agent_id = ?)", ConvOpen, agent).Where("status <> ?", ConvWaiting).
		OrderExpr("last_msg_at DESC, id DESC").Limit(20).Scan(ctx)
	return append(cs, past...), err
}

// Held reports whether agent holds or held conversation id.
func (r *ChatRepo) Held(ctx context.Context, id, agent uint64) (bool, error) {
	return r.DB.NewSelect().Model((*ChatHold)(nil)).Where("conversation_id = ?", id).Where("agent_id = ?", agent).Exists(ctx)
}

// InsertLine stores l and moves its conversation's last line. When the
// sender already stored a line with the same client message id, nothing
// is written and that line is returned with dup true. A conversation
// that has no row stores nothing and returns ErrNoConversation: a line
// is never stored where no conversation will show it.
func (r *ChatRepo) InsertLine(ctx context.Context, l *ChatLine) (stored *ChatLine, dup bool, err error) {
	err = r.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		text := l.Text
		if r := []rune(text); len(r) > 200 {
			text = string(r[:200])
		}
		res, err := tx.NewUpdate().Model((*Conversation)(nil)).
			Set("last_line_id = GREATEST(last_line_id, ?)", l.ID).Set("last_msg_at = GREATEST(last_msg_at, ?)", l.CreatedAt).
			Set("last_text = ?", text).Where("id = ?", l.ConversationID).Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			// Rows affected counts changed rows: an unchanged one exists too.
			exists, err := tx.NewSelect().Model((*Conversation)(nil)).Where("id = ?", l.ConversationID).Exists(ctx)
			if err != nil {
				return err
			}
			if !exists {
				return ErrNoConversation
			}
		}
		_, err = tx.NewInsert().Model(l).Exec(ctx)
		return err
	})
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1062 && l.ClientMsgID != nil {
		prev, ferr := r.LineByClientID(ctx, l.Sender, l.SenderID, *l.ClientMsgID)
		if ferr != nil {
			return nil, false, ferr
		}
		return prev, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return l, false, nil
}

// LineByClientID finds a sender's line by its client message id, or
// returns sql.ErrNoRows.
func (r *ChatRepo) LineByClientID(ctx context.Context, sender string, senderID uint64, clientMsgID string) (*ChatLine, error) {
	l := new(ChatLine)
	err := r.DB.NewSelect().Model(l).Where("sender = ?", sender).Where("sender_id = ?", senderID).
		Where("client_msg_id = ?", clientMsgID).Scan(ctx)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Lines returns up to limit lines of conversation id before line before
// (0: the newest), newest first.
func (r *ChatRepo) Lines(ctx context.Context, id, before uint64, limit int) ([]ChatLine, error) {
	var ls []ChatLine
	q := r.DB.NewSelect().Model(&ls).Where("conversation_id = ?", id)
	if before > 0 {
		q = q.Where("id < ?", before)
	}
	err := q.OrderExpr("id DESC").Limit(int64(limit)).Scan(ctx)
	return ls, err
}

// MarkAgentRead moves the agent's read mark of conversation id to its
// last line.
func (r *ChatRepo) MarkAgentRead(ctx context.Context, id uint64) error {
	_, err := r.DB.NewUpdate().Model((*Conversation)(nil)).Set("agent_read_id = last_line_id").Where("id = ?", id).Exec(ctx)
	return err
}

// AgentUnread counts, per conversation, the user's lines after the
// agent's read mark.
func (r *ChatRepo) AgentUnread(ctx context.Context, ids []uint64) (map[uint64]int, error) {
	out := make(map[uint64]int, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	var rows []struct {
		ID uint64 `bun:"id"`
		N  int    `bun:"n"`
	}
	err := r.DB.NewSelect().TableExpr("chat_conversations AS c").
		ColumnExpr("c.id AS id, COUNT(l.id) AS n").
		Join("JOIN chat_lines AS l ON l.conversation_id = c.id AND l.sender = ? AND l.id > c.agent_read_id", SenderUser).
		Where("c.id IN (?)", bun.In(ids)).GroupExpr("c.id").Scan(ctx, &rows)
	for _, r := range rows {
		out[r.ID] = r.N
	}
	return out, err
}
