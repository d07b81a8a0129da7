package app

import (
	"context"
	"encoding/json"
	"time"

	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
)

// The chat's view of the rest of the process: these adapters are all it
// gets (see chat.Params).

type chatPusher struct{ a *App }

func (p chatPusher) PushToUser(ctx context.Context, uid uint64, frames ...hub.Frame) error {
	return p.a.pushToUser(ctx, uid, frames...)
}

type chatInbox struct{ a *App }

func (i chatInbox) Notify(ctx context.Context, uid uint64, kind string, body json.RawMessage, collapseKey, idem string) error {
	_, err := i.a.Ingest(ctx, &IngestRequest{UIDs: []uint64{uid}, Kind: kind, Body: body, CollapseKey: collapseKey, IdempotencyKey: idem})
	return err
}

type chatPresence struct{ a *App }

func (p chatPresence) Online(ctx context.Context, uid uint64) (bool, error) {
	inst, err := p.a.Redis.Do(ctx, p.a.Redis.B().Hvals().Key(keyUserConns(uid)).Build()).AsIntSlice()
	if err != nil {
		return false, err
	}
	for _, n := range inst {
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}

type chatInstances struct{ a *App }

func (i chatInstances) Alive(ctx context.Context, inst string) (bool, error) {
	n, err := i.a.Redis.Do(ctx, i.a.Redis.B().Exists().Key(keyAlive(inst)).Build()).AsInt64()
	return n == 1, err
}

func newChat(a *App) *chat.Service {
	return chat.New(chat.Params{
		Config: a.Cfg.Chat, Redis: a.Redis, Repo: &models.ChatRepo{DB: a.DB},
		Push: chatPusher{a}, Inbox: chatInbox{a}, Presence: chatPresence{a}, Instances: chatInstances{a},
		NewID: a.IDs.Next, Instance: a.Instance, Clock: &a.Clock, Log: a.Log, Registerer: a.Metrics.Registry,
		Mint: func(agent uint64, name string, ttl time.Duration) (string, error) {
			return a.Auth.Mint(Identity{UID: agent, Role: RoleAgent, Name: name}, ttl)
		},
	})
}

// chatSender is who a connection speaks for in the chat.
func chatSender(c *hub.Client) chat.Sender {
	if agent, ok := chat.IsAgentKey(c.UID); ok && c.Role == string(RoleAgent) {
		return chat.Sender{ID: agent, Agent: true, Name: c.Name}
	}
	return chat.Sender{ID: c.UID, Name: c.Name}
}

// ChatSender is who a verified token speaks for in the chat (REST).
func ChatSender(id Identity) chat.Sender {
	return chat.Sender{ID: id.UID, Agent: id.Role == RoleAgent, Name: id.Name}
}

// chatConnected gives a new connection its chat state (after hello).
func (a *App) chatConnected(ctx context.Context, c *hub.Client) error {
	who := chatSender(c)
	if who.Agent {
		return a.Chat.AgentConnected(ctx, who, c)
	}
	return a.Chat.UserConnected(ctx, who.ID, c)
}

// chatDisconnected tells the chat a connection is gone (after it was
// unregistered).
func (a *App) chatDisconnected(ctx context.Context, c *hub.Client) {
	who := chatSender(c)
	if who.Agent {
		a.Chat.AgentDisconnected(ctx, who.ID)
		return
	}
	a.Chat.UserDisconnected(ctx, who.ID)
}
