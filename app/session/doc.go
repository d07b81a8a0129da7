// Package session owns a client's connection from its first frame to its
// last: connect (hello, the replay of what it missed, held live frames),
// the frames a client sends (ack, read, sync, chat frames, with a budget
// against floods), reads and listings of stored messages, presence, and
// the end of a connection. Handlers give it identities and bytes; it
// gives them hub clients. It uses packages delivery, broadcast, cluster,
// activity and chat through their exported methods only.
package session
