package testsvc

import (
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDB is a mariadbd of a test's own: installed into a fresh data
// folder under the test's temporary directory, listening on a free
// loopback port, root with no password. Tests stop and start it to put
// MySQL trouble in front of the code (an outage, a second shard server)
// without touching the MySQL a developer keeps.
type MariaDB struct {
	tb   testing.TB
	dir  string
	Port int
	cmd  *exec.Cmd
	done chan struct{}
}

func findBin(names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
		for _, d := range []string{"/usr/sbin", "/usr/bin"} {
			if p := filepath.Join(d, n); isExec(p) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("none of %v is installed (Debian package mariadb-server)", names)
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&0o111 != 0
}

// StartMariaDB installs and starts a private MariaDB for tb; it is killed
// when tb ends. Without mariadbd installed, tb fails.
func StartMariaDB(tb testing.TB) *MariaDB {
	tb.Helper()
	install, err := findBin("mariadb-install-db", "mysql_install_db")
	if err != nil {
		tb.Fatal(err)
	}
	port, err := FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	// A short path: the server's socket must fit in a sockaddr_un.
	dir, err := os.MkdirTemp("", "pdmy")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	m := &MariaDB{tb: tb, dir: dir, Port: port}
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(dir, "data"), "--auth-root-authentication-method=normal", "--skip-test-db"}
	if os.Getuid() == 0 {
		args = append(args, "--user=root")
	}
	if out, err := exec.Command(install, args...).CombinedOutput(); err != nil {
		tb.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	m.Start()
	tb.Cleanup(func() { m.kill(syscall.SIGKILL) })
	return m
}

// Start starts the server on its port and data folder (again, after Stop)
// and waits until it takes connections.
func (m *MariaDB) Start() {
	m.tb.Helper()
	bin, err := findBin("mariadbd", "mysqld")
	if err != nil {
		m.tb.Fatal(err)
	}
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(m.dir, "data"), fmt.Sprintf("--port=%d", m.Port),
		"--bind-address=127.0.0.1", "--socket=" + filepath.Join(m.dir, "sock"), "--pid-file=" + filepath.Join(m.dir, "pid"),
		"--log-error=" + filepath.Join(m.dir, "error.log"), "--innodb-flush-log-at-trx-commit=2",
		"--innodb-buffer-pool-size=64M", "--skip-log-bin", "--max-connections=500"}
	if os.Getuid() == 0 {
		args = append(args, "--user=root")
	}
	m.cmd = exec.Command(bin, args...)
	if err := m.cmd.Start(); err != nil {
		m.tb.Fatal(err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(m.cmd, m.done)
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open("mysql", m.DSN(""))
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return
		}
		select {
		case <-m.done:
			log, _ := os.ReadFile(filepath.Join(m.dir, "error.log"))
			m.tb.Fatalf("mariadbd exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			m.tb.Fatalf("mariadbd on port %d did not answer in 60 s: %v", m.Port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop shuts the server down cleanly (SIGTERM, as a service manager
// stops it) and waits until it is gone and its port refuses connections.
func (m *MariaDB) Stop() { m.kill(syscall.SIGTERM) }

func (m *MariaDB) kill(sig syscall.Signal) {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
	for range 100 {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.Port), 100*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// DSN is the server's DSN for database db ("" for none).
func (m *MariaDB) DSN(db string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.DBName = "root", "tcp", fmt.Sprintf("127.0.0.1:%d", m.Port), db
	return cfg.FormatDSN()
}

// Database creates a database named prefix (plus a unique suffix) on the
// server and returns its DSN.
func (m *MariaDB) Database(prefix string) string {
	m.tb.Helper()
	name := UniqueName(prefix)
	db, err := sql.Open("mysql", m.DSN(""))
	if err != nil {
		m.tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE `" + name + "` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		m.tb.Fatal(err)
	}
	return m.DSN(name)
}
