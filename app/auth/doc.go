// Package auth says who a token speaks for: an HS256 JWT from the main
// site, checked here, or an opaque token checked at the user center
// (PUSHDESK_AUTH_URL) with the answers cached in Redis. It owns Identity
// and Role and must not know what the identity is then used for.
package auth
