package models

import (
	"context"
	"database/sql"
	"errors"

	"github.com/go-sql-driver/mysql"
)

// AddAgent stores a console login; ErrAgentExists when the email is taken.
func (r *ChatRepo) AddAgent(ctx context.Context, a *ChatAgent) error {
	_, err := r.DB.NewInsert().Model(a).Exec(ctx)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1062 {
		return ErrAgentExists
	}
	return err
}

// Agents lists the console logins by id.
func (r *ChatRepo) Agents(ctx context.Context) ([]ChatAgent, error) {
	var as []ChatAgent
	err := r.DB.NewSelect().Model(&as).Order("id").Scan(ctx)
	return as, err
}

// AgentByEmail returns the login for email, or ErrNoAgent.
func (r *ChatRepo) AgentByEmail(ctx context.Context, email string) (*ChatAgent, error) {
	a := new(ChatAgent)
	err := r.DB.NewSelect().Model(a).Where("email = ?", email).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoAgent
	}
	return a, err
}

// AgentDisabled reports whether id is a console login that was disabled
// (agents known only from the main site's tokens are not).
func (r *ChatRepo) AgentDisabled(ctx context.Context, id uint64) (bool, error) {
	return r.DB.NewSelect().Model((*ChatAgent)(nil)).Where("id = ?", id).Where("disabled = 1").Exists(ctx)
}

// DisableAgent turns a login off; ErrNoAgent when there is none.
func (r *ChatRepo) DisableAgent(ctx context.Context, email string) error {
	res, err := r.DB.NewUpdate().Model((*ChatAgent)(nil)).Set("disabled = 1").Where("email = ?", email).Exec(ctx)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := r.AgentByEmail(ctx, email); err != nil {
			return err
		}
	}
	return nil
}
