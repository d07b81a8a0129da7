package app

import (
	"cmp"
	"context"
	"encoding/json"
	"time"

	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/app/delivery"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
)

// The chat's view of the rest of the process: these adapters are all it
// gets (see chat.Params).

type chatPusher struct{ a *App }

func (p chatPusher) PushToUser(ctx context.Context, uid uint64, frames ...hub.Frame) error {
	return p.a.Cluster.Push(ctx, uid, frames...)
}

type chatInbox struct{ a *App }

func (i chatInbox) Notify(ctx context.Context, uid uint64, kind string, body json.RawMessage, collapseKey, idem string) error {
	_, err := i.a.Delivery.Ingest(ctx, &delivery.IngestRequest{UIDs: []uint64{uid}, Kind: kind, Body: body, CollapseKey: collapseKey, IdempotencyKey: idem})
	return err
}

type chatPresence struct{ a *App }

func (p chatPresence) Online(ctx context.Context, uid uint64) (bool, error) {
	n, err := p.a.Cluster.Connections(ctx, uid)
	return n > 0, err
}

func newChat(a *App) *chat.Service {
	return chat.New(chat.Params{
		Config: a.Cfg.Chat, Redis: a.Redis, Repo: &models.ChatRepo{DB: a.DB},
		Push: chatPusher{a}, Inbox: chatInbox{a}, Presence: chatPresence{a}, Instances: a.Cluster,
		NewID: a.IDs.Next, Instance: a.Instance, Clock: a.Clock, Log: a.Log, Registerer: a.Metrics.Registry,
		Mint: func(agent uint64, name string, ttl time.Duration) (string, error) {
			return a.Auth.Mint(auth.Identity{UID: agent, Role: auth.RoleAgent, Name: name}, ttl)
		},
	})
}

// chatLineLimit is how many lines an agent may send per 10 s: the chat's
// Rate × Capacity, with chat.Config's defaults (20, 8).
func (c *Config) chatLineLimit() int {
	return cmp.Or(c.Chat.Rate, 20) * cmp.Or(c.Chat.Capacity, 8)
}
