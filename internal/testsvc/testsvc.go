// Package testsvc starts the throwaway servers tests need, so that no
// test flushes or drops what a developer keeps in their own Redis or
// MySQL: a redis-server of the test's own on a free loopback port, and a
// database of the test's own on the MySQL that PUSHDESK_MYSQL_DSN names.
package testsvc

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DefaultMySQLDSN is the server Pushdesk itself uses when
// PUSHDESK_MYSQL_DSN is unset (CONTRACT.md).
const DefaultMySQLDSN = "root@tcp(127.0.0.1:3306)/pushdesk"

// Redis starts an empty redis-server for tb, stopped when tb ends, and
// returns its URL (database 0). Without redis-server installed, tb fails.
func Redis(tb testing.TB) string {
	tb.Helper()
	cmd, url, err := StartRedis(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return url
}

// StartRedis starts an empty redis-server with its files in dir (no
// persistence) and returns the process and its URL; the caller kills it.
func StartRedis(dir string) (*exec.Cmd, string, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, "", fmt.Errorf("redis-server is not installed (Debian package redis-server)")
	}
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return cmd, "redis://" + addr + "/0", nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, "", fmt.Errorf("redis-server on %s did not open", addr)
}

// PackageRedis is StartRedis for a TestMain: an empty redis-server with
// its files in a new temporary folder, and a func that stops it and
// removes the folder (call it once m.Run returns).
func PackageRedis() (string, func(), error) {
	dir, err := os.MkdirTemp("", "pushdesk-redis-")
	if err != nil {
		return "", nil, err
	}
	cmd, url, err := StartRedis(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return url, func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}, nil
}

// FreePort is a loopback TCP port nobody listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// MySQLDSN is the server PUSHDESK_MYSQL_DSN names, or Pushdesk's default
// without it: the server tests make their databases on.
func MySQLDSN() string {
	if dsn := os.Getenv("PUSHDESK_MYSQL_DSN"); dsn != "" {
		return dsn
	}
	return DefaultMySQLDSN
}

// UniqueName is prefix with this process's id and a random part added:
// a name no other run picks, not even a second run of the same suite
// beside this one (two checkouts, CI next to a developer).
func UniqueName(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s_%d_%s", prefix, os.Getpid(), hex.EncodeToString(b[:]))
}

// OwnDatabase creates a new database, named prefix plus a unique suffix
// (UniqueName), on the MySQL server that MySQLDSN names, and returns its
// DSN and a func that drops it. It never drops or reuses a database that
// was there before: if the name is taken, it fails.
func OwnDatabase(prefix string) (string, func(), error) {
	cfg, err := mysql.ParseDSN(MySQLDSN())
	if err != nil {
		return "", nil, fmt.Errorf("PUSHDESK_MYSQL_DSN: %w", err)
	}
	name := UniqueName(prefix)
	cfg.DBName = ""
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return "", nil, err
	}
	// The character set and collation Pushdesk's own databases get
	// (models.Open creates them so).
	if _, err := db.Exec("CREATE DATABASE `" + name + "` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("create database %s on %s: %w", name, cfg.Addr, err)
	}
	cfg.DBName = name
	return cfg.FormatDSN(), func() {
		_, _ = db.Exec("DROP DATABASE IF EXISTS `" + name + "`")
		db.Close()
	}, nil
}

// RestartRedis kills the redis-server cmd (as kill -9 would) and starts an
// empty one on the same URL, as a Redis restarted without persistence
// comes back; it returns the new process.
func RestartRedis(tb testing.TB, cmd *exec.Cmd, url string) *exec.Cmd {
	tb.Helper()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0")
	_, port, _ := net.SplitHostPort(addr)
	next := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", tb.TempDir(), "--save", "", "--appendonly", "no")
	if err := next.Start(); err != nil {
		tb.Fatal(err)
	}
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return next
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.Fatalf("redis-server on %s did not come back", addr)
	return nil
}

// Database is OwnDatabase for tb: the database is dropped when tb ends
// (after cleanups registered later, such as servers using it, have run).
func Database(tb testing.TB, prefix string) string {
	tb.Helper()
	dsn, drop, err := OwnDatabase(prefix)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(drop)
	return dsn
}

// OpenDB opens dsn for tb's checks of what landed in MySQL, closed when
// tb ends.
func OpenDB(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}
