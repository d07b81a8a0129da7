// Package chat is the support chat: conversations between users and
// agents, who gets which conversation (sticky, least loaded, the waiting
// pool), agents' presence and status, and the console logins.
//
// It owns the "pd:{chat}:" Redis keys (keys.go) and the chat_* tables
// (through models.ChatRepo). The live state of the desk — who holds what,
// who waits, which agents are connected — is in Redis, changed only by the
// scripts in lua/, each one atomic, so several instances assign without
// racing. MySQL holds what must outlast Redis: conversations, lines, the
// hand-out log; Redis's state is rebuilt from it when lost, and rows a
// failed write left wrong are repaired from Redis (repair.go).
//
// It must not touch connections or other Redis keys itself: frames go out
// through the Pusher it is given (the per-user delivery and cross-instance
// routing of package app), an offline user's inbox through the Inbox, and
// who is online comes from Presence and Instances. Identity comes in as a
// Sender; the package never parses tokens.
package chat
