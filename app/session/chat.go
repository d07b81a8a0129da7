package session

import (
	"context"

	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/app/hub"
)

// chatSender is who a connection speaks for in the chat.
func chatSender(c *hub.Client) chat.Sender {
	if agent, ok := chat.IsAgentKey(c.UID); ok && c.Role == string(auth.RoleAgent) {
		return chat.Sender{ID: agent, Agent: true, Name: c.Name}
	}
	return chat.Sender{ID: c.UID, Name: c.Name}
}

// ChatSender is who a verified token speaks for in the chat (REST).
func ChatSender(id auth.Identity) chat.Sender {
	return chat.Sender{ID: id.UID, Agent: id.Role == auth.RoleAgent, Name: id.Name}
}

// chatConnected gives a new connection its chat state (after hello).
func (s *Service) chatConnected(ctx context.Context, c *hub.Client) error {
	who := chatSender(c)
	if who.Agent {
		return s.Chat.AgentConnected(ctx, who, c)
	}
	return s.Chat.UserConnected(ctx, who.ID, c)
}

// chatDisconnected tells the chat a connection is gone (after it was
// unregistered).
func (s *Service) chatDisconnected(ctx context.Context, c *hub.Client) {
	who := chatSender(c)
	if who.Agent {
		s.Chat.AgentDisconnected(ctx, who.ID)
		return
	}
	s.Chat.UserDisconnected(ctx, who.ID)
}
