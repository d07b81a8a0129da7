package testsvc

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RedisCluster is a Redis Cluster of a test's own: three masters with a
// replica each, six redis-server processes on free loopback ports, their
// files under the test's temporary directory. A short node timeout lets a
// killed master's replica take over within a few seconds.
type RedisCluster struct {
	tb    testing.TB
	Nodes []*RedisNode
}

// RedisNode is one process of a RedisCluster.
type RedisNode struct {
	Addr string
	cmd  *exec.Cmd
	dead bool
}

// clusterNodeTimeout is the nodes' cluster-node-timeout: how long a master
// may be silent before its replica is promoted.
const clusterNodeTimeout = 1000 * time.Millisecond

// StartRedisCluster starts and creates a cluster for tb, killed when tb
// ends; it returns once every slot is served. Without redis-server and
// redis-cli installed, tb fails.
func StartRedisCluster(tb testing.TB) *RedisCluster {
	tb.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Fatalf("%s is not installed (Debian package redis-server)", bin)
		}
	}
	c := &RedisCluster{tb: tb}
	tb.Cleanup(c.stop)
	dir := tb.TempDir()
	for i := range 6 {
		port, err := FreePort()
		if err != nil {
			tb.Fatal(err)
		}
		nd := filepath.Join(dir, fmt.Sprint(port))
		cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", nd+".conf",
			"--cluster-node-timeout", fmt.Sprint(clusterNodeTimeout.Milliseconds()),
			// A replica may always take over, however long its master was gone.
			"--cluster-replica-validity-factor", "0",
			"--save", "", "--appendonly", "no", "--logfile", nd+".log")
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		n := &RedisNode{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
		c.Nodes = append(c.Nodes, n)
		if err := waitListen(n.Addr); err != nil {
			tb.Fatalf("redis node %d: %v", i, err)
		}
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(30 * time.Second)
	return c
}

func waitListen(addr string) error {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s did not open", addr)
}

func (c *RedisCluster) stop() {
	for _, n := range c.Nodes {
		if !n.dead {
			_ = n.cmd.Process.Kill()
			_ = n.cmd.Wait()
		}
	}
}

// URL is the cluster in PUSHDESK_REDIS_URL's form, every node a seed.
func (c *RedisCluster) URL() string {
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr)
	}
	return "redis+cluster://" + strings.Join(addrs, ",") + "/"
}

// Cli runs redis-cli against node addr and returns its output.
func (c *RedisCluster) Cli(addr string, args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// WaitHealthy waits until every live node reports cluster_state:ok,
// every live replica is in sync with its master and each of the three
// slot ranges has a live master, or fails tb.
func (c *RedisCluster) WaitHealthy(within time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := c.healthy()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("redis cluster not healthy after %v: %s", within, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *RedisCluster) healthy() (bool, string) {
	for _, n := range c.Nodes {
		if n.dead {
			continue
		}
		info, err := c.Cli(n.Addr, "cluster", "info")
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false, n.Addr + ": " + firstLine(info, err)
		}
		// A replica that has not synced yet would take over empty.
		repl, err := c.Cli(n.Addr, "info", "replication")
		if err != nil || (strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up")) {
			return false, n.Addr + ": replica not in sync"
		}
	}
	if m := c.Masters(); len(m) != 3 {
		return false, fmt.Sprintf("%d live masters", len(m))
	}
	return true, ""
}

func firstLine(s string, err error) string {
	if err != nil {
		return err.Error()
	}
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// Masters lists the live masters' addresses, as a live node sees them.
func (c *RedisCluster) Masters() []string {
	var out []string
	for _, n := range c.Nodes {
		if n.dead {
			continue
		}
		nodes, err := c.Cli(n.Addr, "cluster", "nodes")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(nodes))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 8 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") || len(f) < 9 {
				continue
			}
			if addr, _, _ := strings.Cut(f[1], "@"); !c.isDead(addr) {
				out = append(out, addr)
			}
		}
		return out
	}
	return nil
}

// MasterOf is the address of the live master serving key's slot.
func (c *RedisCluster) MasterOf(key string) string {
	c.tb.Helper()
	for _, n := range c.Nodes {
		if n.dead {
			continue
		}
		slot, err := c.Cli(n.Addr, "cluster", "keyslot", key)
		if err != nil {
			continue
		}
		nodes, err := c.Cli(n.Addr, "cluster", "nodes")
		if err != nil {
			continue
		}
		var s int
		fmt.Sscan(slot, &s)
		sc := bufio.NewScanner(strings.NewReader(nodes))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			for _, r := range f[8:] {
				var lo, hi int
				if k, _ := fmt.Sscanf(r, "%d-%d", &lo, &hi); k == 1 {
					hi = lo
				} else if k != 2 {
					continue
				}
				if addr, _, _ := strings.Cut(f[1], "@"); s >= lo && s <= hi && !c.isDead(addr) {
					return addr
				}
			}
		}
	}
	c.tb.Fatalf("no live master serves %q", key)
	return ""
}

// isDead reports whether addr is a node Kill stopped (the others may not
// have noticed yet).
func (c *RedisCluster) isDead(addr string) bool {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n.dead
		}
	}
	return false
}

// Kill kills the node at addr as kill -9 would; it stays down.
func (c *RedisCluster) Kill(addr string) {
	c.tb.Helper()
	for _, n := range c.Nodes {
		if n.Addr == addr && !n.dead {
			_ = n.cmd.Process.Kill()
			_ = n.cmd.Wait()
			n.dead = true
			return
		}
	}
	c.tb.Fatalf("no live redis node %s", addr)
}
