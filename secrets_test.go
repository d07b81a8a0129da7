package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pushdesk/pushdesk/internal/testsvc"
)

// The pushdesk binary, run as an operator would, with secrets in every
// variable that holds one: no line it prints, starting, failing or
// stopping, shows one. Redis's default user takes any password, so a
// password there lets it start; an unknown user or a password MariaDB's
// root does not have makes it fail.
func TestNoSecretInAnyLineTheProcessPrints(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "pushdesk")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// A redis-server and a database of the test's own.
	redisBase := strings.TrimPrefix(testsvc.Redis(t), "redis://")
	mc, err := mysql.ParseDSN(testsvc.Database(t, "pushdesk_secrets_test"))
	if err != nil {
		t.Fatal(err)
	}
	goodDSN := mc.FormatDSN()
	mc.Passwd = "sql-pw-4e1d"
	badDSN := mc.FormatDSN()

	secrets := []string{"jwt-sec-4e1d", "ingest-4e1d", "admin-pw-4e1d", "metrics-4e1d", "rds-pw-4e1d", "rds pw 4e1d", "sql-pw-4e1d"}
	env := []string{
		"PUSHDESK_ADDR=127.0.0.1:0", "PUSHDESK_JWT_SECRET=jwt-sec-4e1d", "PUSHDESK_INGEST_KEY=ingest-4e1d",
		"PUSHDESK_ADMIN_PASSWORD=admin-pw-4e1d", "PUSHDESK_METRICS_TOKEN=metrics-4e1d",
	}
	for _, tc := range []struct {
		name, redis, dsn string
		starts           bool
	}{
		{"starts and stops", "redis://:rds-pw-4e1d@" + redisBase, goodDSN, true},
		{"redis refuses the user", "redis://nobody:rds-pw-4e1d@" + redisBase, goodDSN, false},
		{"the redis URL does not parse", "redis://nobody:rds pw 4e1d@" + redisBase, goodDSN, false},
		{"mysql refuses the password", "redis://" + redisBase, badDSN, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve")
			cmd.Env = append(os.Environ(), env...)
			cmd.Env = append(cmd.Env, "PUSHDESK_REDIS_URL="+tc.redis, "PUSHDESK_MYSQL_DSN="+tc.dsn)
			var out syncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if tc.starts {
				for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "listen"); time.Sleep(50 * time.Millisecond) {
					if time.Now().After(deadline) {
						_ = cmd.Process.Kill()
						t.Fatalf("no listening line in 30 s:\n%s", out.String())
					}
				}
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
			err := cmd.Wait()
			if tc.starts != (err == nil) {
				t.Fatalf("exit: %v, want success %v\n%s", err, tc.starts, out.String())
			}
			text := out.String()
			for _, s := range secrets {
				if strings.Contains(text, s) {
					t.Errorf("output shows %q:\n%s", s, text)
				}
			}
			if !tc.starts && !strings.Contains(text, "pushdesk:") {
				t.Errorf("no error line:\n%s", text)
			}
			t.Logf("%d lines, last: %s", strings.Count(text, "\n"), lastLine(text))
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
