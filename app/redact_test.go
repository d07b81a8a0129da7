package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/pushdesk/pushdesk/internal/testsvc"
)

func TestRedact(t *testing.T) {
	RegisterSecrets("jwt-secret-xyz", "abc") // too short to replace everywhere
	for _, tc := range []struct{ name, in, want string }{
		{"a registered secret", "token signed with jwt-secret-xyz!", "token signed with [redacted]!"},
		{"a short value stays", "abc def", "abc def"},
		{"a redis URL's password", "dial redis://:hunter2@10.0.0.1:6379/0: refused", "dial redis://:[redacted]@10.0.0.1:6379/0: refused"},
		{"a user and password", "rediss://app:p@ss:w0rd@redis.internal:6380", "rediss://app:[redacted]@redis.internal:6380"},
		{"a URL without password", "redis://10.0.0.1:6379/0", "redis://10.0.0.1:6379/0"},
		{"a DSN's password", "open root:s3cr3t@tcp(db:3306)/pushdesk failed", "open root:[redacted]@tcp(db:3306)/pushdesk failed"},
		{"a DSN over a socket", "app:pw@unix(/run/mysqld.sock)/x", "app:[redacted]@unix(/run/mysqld.sock)/x"},
		{"a DSN in quotes", `dsn="u:p@tcp(h)/d"`, `dsn="u:[redacted]@tcp(h)/d"`},
		{"an e-mail address stays", "agent a@example.com signed in", "agent a@example.com signed in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Redact(tc.in); got != tc.want {
				t.Fatalf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// A URL that does not parse is quoted whole in url.Error: its password
// must not come through an error that wraps it.
func TestRedactErrorKeepsTheChain(t *testing.T) {
	RegisterSecrets(Config{RedisURL: "redis://:pass word@host:6379/0"}.secrets()...)
	_, perr := url.Parse("redis://:pass word@host:6379/0")
	err := RedactError(fmt.Errorf("parse PUSHDESK_REDIS_URL: %w", perr))
	if strings.Contains(err.Error(), "pass word") {
		t.Fatalf("error = %q, shows the password", err)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("errors.As(%v, *url.Error) = false, want the chain kept", err)
	}
	if RedactError(nil) != nil {
		t.Fatal("RedactError(nil) != nil")
	}
}

type leaky struct{ Key string }

// Every part of a record goes through Redact: the message, string
// attributes, errors, groups, attributes added with With, other values.
func TestRedactingHandler(t *testing.T) {
	RegisterSecrets("ingest-key-123")
	var buf bytes.Buffer
	log := slog.New(Redacting(slog.NewJSONHandler(&buf, nil))).With("dsn", "root:pw1@tcp(db:3306)/x")
	log.WithGroup("g").Info("key ingest-key-123 used",
		"url", "redis://:pw2@h:6379",
		"err", fmt.Errorf("wrapped: %w", errors.New("auth ingest-key-123")),
		slog.Group("inner", "secret", "ingest-key-123"),
		"cfg", leaky{Key: "ingest-key-123"},
		"n", 42, "ok", "plain")
	out := buf.String()
	for _, leak := range []string{"ingest-key-123", "pw1", "pw2"} {
		if strings.Contains(out, leak) {
			t.Errorf("log line shows %q: %s", leak, out)
		}
	}
	for _, kept := range []string{`"n":42`, `"ok":"plain"`, "[redacted]"} {
		if !strings.Contains(out, kept) {
			t.Errorf("log line lacks %s: %s", kept, out)
		}
	}
	if h := Redacting(log.Handler()); h != log.Handler() {
		t.Error("Redacting wrapped a redacting handler again")
	}
}

// Connecting with a password in the Redis URL or the MySQL DSN that the
// server refuses: the error and the log name the server, not the password.
// (The test Redis and MariaDB have no passwords, so any password fails.)
func TestConnectErrorsShowNoPassword(t *testing.T) {
	redisURL := testsvc.Redis(t)
	dsn := testsvc.Database(t, "pushdesk_app_test")
	withPass := func(u, pw string) string { // the default user takes any password: name another
		return strings.Replace(u, "://", "://nobody:"+pw+"@", 1)
	}
	for _, tc := range []struct {
		name, secret string
		change       func(*Config, string)
	}{
		{"redis refuses the password", "rds-pw-9f3", func(c *Config, pw string) { c.RedisURL = withPass(redisURL, pw) }},
		{"the redis URL does not parse", "rds pw 9f3", func(c *Config, pw string) { c.RedisURL = withPass(redisURL, pw) }},
		{"mysql refuses the password", "sql-pw-9f3", func(c *Config, pw string) {
			c.MySQLDSN = strings.Replace(dsn, "root@", "root:"+pw+"@", 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{RedisURL: redisURL, MySQLDSN: dsn, JWTSecret: "jwt-test", IngestKey: "ingest-test"}
			tc.change(&cfg, tc.secret)
			var buf bytes.Buffer
			a, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(&buf, nil)))
			if err == nil {
				a.Close()
				t.Fatal("New succeeded, want the connection refused")
			}
			if strings.Contains(err.Error(), tc.secret) || strings.Contains(buf.String(), tc.secret) {
				t.Fatalf("error %q (log %q) shows the password", err, buf.String())
			}
			t.Logf("error: %v", err)
		})
	}
}
