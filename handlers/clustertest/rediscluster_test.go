package clustertest

import (
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
)

// The Redis Cluster suite: two pushdesk processes on a 3-master Redis
// Cluster (a replica each) and a shard map over two MariaDB servers, the
// machine's and a private one. What it shows: every key a script or
// transaction touches is in one slot (a cross-slot command fails or
// panics in rueidis), sharded pub/sub carries pushes between the
// instances, and a master killed with kill -9 fails over with no accepted
// message lost.

// clusterDeployment is the suite's stores and processes.
type clusterDeployment struct {
	redis      *testsvc.RedisCluster
	main, shrd *sql.DB // the shard map's two servers (shards 0-63, 64-127)
	i1, i2     *instance
}

func startClusterDeployment(t *testing.T, shardMap bool) *clusterDeployment {
	t.Helper()
	d := &clusterDeployment{redis: testsvc.StartRedisCluster(t)}
	mainDSN := freshDatabase(t, "pushdesk_rcluster")
	env := []instanceOpt{chatEnv, func(env []string) []string { return append(env, "PUSHDESK_ADMIN_PASSWORD=pw") }}
	d.main = testsvc.OpenDB(t, mainDSN)
	if shardMap {
		second := testsvc.StartMariaDB(t)
		secondDSN := second.Database("pushdesk_rcluster")
		m := fmt.Sprintf("0-63=%s;64-127=%s", mainDSN, secondDSN)
		env = append(env, func(env []string) []string { return append(env, "PUSHDESK_MYSQL_SHARDS="+m) })
		d.shrd = testsvc.OpenDB(t, secondDSN)
	}
	// One after the other: each migrates at start.
	d.i1 = startInstance(t, "rc1", d.redis.URL(), mainDSN, env...)
	d.i2 = startInstance(t, "rc2", d.redis.URL(), mainDSN, env...)
	return d
}

// serverOf is the database holding uid's shard table.
func (d *clusterDeployment) serverOf(uid uint64) *sql.DB {
	if d.shrd != nil && uid%models.ShardCount >= 64 {
		return d.shrd
	}
	return d.main
}

// stored is how many rows of uid's shard table have id (or, with id "",
// belong to uid); an error when the table is not on db.
func stored(db *sql.DB, uid uint64, id string) (int, error) {
	q, args := "SELECT COUNT(*) FROM "+models.ShardTable(uid)+" WHERE to_uid = ?", []any{uid}
	if id != "" {
		q, args = q+" AND id = ?", append(args, id)
	}
	var n int
	err := db.QueryRow(q, args...).Scan(&n)
	return n, err
}

// userOn returns a new uid whose shard is in [lo, hi).
func userOn(lo, hi uint64) uint64 {
	for {
		if u := newUID(); u%models.ShardCount >= lo && u%models.ShardCount < hi {
			return u
		}
	}
}

func TestRedisClusterServesTheContract(t *testing.T) {
	d := startClusterDeployment(t, true)
	i1, i2 := d.i1, d.i2
	u1, u2 := userOn(0, 64), userOn(64, 128) // one per MariaDB server
	// Each user is connected to the instance the ingest does not reach:
	// every push crosses the instances by sharded pub/sub.
	c1, c2 := dial(t, i2, u1), dial(t, i1, u2)

	// Ingest with an idempotency key, and the same call again.
	body := fmt.Sprintf(`{"to_uids":[%d,%d],"kind":"comment","body":{"text":"hi"},"idempotency_key":"rc-1"}`, u1, u2)
	code, first := i1.request(t, http.MethodPost, "/internal/v1/messages", ingestKey, body)
	if code != 202 || first["duplicate"] != false {
		t.Fatalf("ingest = %d %v, want 202", code, first)
	}
	ids := first["ids"].([]any)
	code, again := i2.request(t, http.MethodPost, "/internal/v1/messages", ingestKey, body)
	if code != 200 || again["duplicate"] != true || fmt.Sprint(again["ids"]) != fmt.Sprint(ids) {
		t.Fatalf("the same idempotency key again = %d %v, want 200 with ids %v", code, again, ids)
	}
	for i, c := range []*client{c1, c2} {
		if !c.waitMsg(ids[i].(string), 10*time.Second) {
			t.Fatalf("user %d was not pushed %s", []uint64{u1, u2}[i], ids[i])
		}
	}

	// Stored in the right server's shard, and only there.
	for i, u := range []uint64{u1, u2} {
		eventually(t, 10*time.Second, "the message stored on its user's server", func() bool {
			n, err := stored(d.serverOf(u), u, ids[i].(string))
			return err == nil && n == 1
		})
		other := d.main
		if d.serverOf(u) == d.main {
			other = d.shrd
		}
		if _, err := stored(other, u, ""); err == nil {
			t.Fatalf("%s exists on the other server", models.ShardTable(u))
		}
	}

	// Unread and replay, from a fresh connection on the other instance.
	for _, u := range []uint64{u1, u2} {
		if n := unreadTotal(t, i2, u); n != 1 {
			t.Fatalf("unread of %d = %d, want 1", u, n)
		}
		c := dial(t, i2, u)
		f := c.waitFrameOf(t, 5*time.Second, "msg")
		if f["replay"] != true {
			t.Fatalf("first msg to a new connection of %d = %v, want a replay", u, f)
		}
		if code, res := i1.request(t, http.MethodPost, "/api/v1/me/read", token(t, u), `{"all":true}`); code != 200 || res["updated"].(float64) != 1 {
			t.Fatalf("read all of %d = %d %v", u, code, res)
		}
		if n := unreadTotal(t, i2, u); n != 0 {
			t.Fatalf("unread of %d after read all = %d", u, n)
		}
	}

	// A broadcast reaches both instances' users once; its repeat is a
	// duplicate of the first.
	bc := `{"segment":"all","kind":"system","body":{"text":"maintenance"},"idempotency_key":"rc-b1"}`
	code, b := i2.request(t, http.MethodPost, "/internal/v1/broadcasts", ingestKey, bc)
	if code != 202 {
		t.Fatalf("broadcast = %d %v", code, b)
	}
	if code, b2 := i1.request(t, http.MethodPost, "/internal/v1/broadcasts", ingestKey, bc); code != 200 || b2["id"] != b["id"] || b2["duplicate"] != true {
		t.Fatalf("the broadcast again = %d %v, want 200 with id %v", code, b2, b["id"])
	}
	for _, c := range []*client{c1, c2} {
		if !c.waitMsg(b["id"].(string), 10*time.Second) {
			t.Fatalf("broadcast %v not pushed", b["id"])
		}
	}

	// Chat: a user on one instance, an agent on the other; a line sent
	// twice with one client_msg_id is acked with one id.
	agent, uid := newUID(), newUID()
	a := dialAgent(t, i2, agent, "Ann")
	time.Sleep(300 * time.Millisecond) // past the settle window
	u := dial(t, i1, uid)
	u.write(t, `{"type":"chat.send","text":"help","client_msg_id":"m1"}`)
	ack := u.waitFrame(t, 5*time.Second, "chat.ack", nil)
	u.waitFrame(t, 5*time.Second, "chat.assigned", assignedTo(agent))
	a.waitFrame(t, 5*time.Second, "chat.msg", func(f map[string]any) bool { return f["text"] == "help" })
	u.write(t, `{"type":"chat.send","text":"help","client_msg_id":"m1"}`)
	if ack2 := u.waitFrame(t, 5*time.Second, "chat.ack", nil); ack2["id"] != ack["id"] {
		t.Fatalf("ack of the repeated line = %v, want id %v", ack2, ack["id"])
	}
	a.write(t, fmt.Sprintf(`{"type":"chat.send","conversation_id":%q,"text":"on it"}`, ack["conversation_id"]))
	u.waitFrame(t, 5*time.Second, "chat.msg", func(f map[string]any) bool { return f["text"] == "on it" })

	// Presence and stats read keys of several slots.
	if online, conns := presence(t, i1, u1); !online || conns != 2 { // c1 on rc2 and the replay's
		t.Fatalf("presence of %d = %v, %d, want online with 2 connections", u1, online, conns)
	}
	if st := stats(t, i2); st["online_users"].(float64) < 3 {
		t.Fatalf("stats = %v, want at least 3 users online", st)
	}

	// asynqmon on the cluster.
	req, _ := http.NewRequest(http.MethodGet, "http://"+i1.addr+"/admin/queues/api/queues", nil)
	req.SetBasicAuth("admin", "pw")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("asynqmon's queue list = %d, want 200", res.StatusCode)
	}
}

func unreadTotal(tb testing.TB, in *instance, uid uint64) int64 {
	tb.Helper()
	code, body := in.request(tb, http.MethodGet, "/api/v1/me/unread", token(tb, uid), "")
	if code != 200 {
		tb.Fatalf("unread of %d = %d %v", uid, code, body)
	}
	return int64(body["total"].(float64))
}

// waitFrameOf waits for the next frame of type typ.
func (c *client) waitFrameOf(tb testing.TB, d time.Duration, typ string) map[string]any {
	tb.Helper()
	return c.waitFrame(tb, d, typ, nil)
}

// masterOfQueue is the address of the master holding the fast queue.
func (d *clusterDeployment) masterOfQueue() string {
	return d.redis.MasterOf("asynq:{fast}:pending")
}

// idList is ids as a SQL list of literals (ids are decimal strings).
func idList(ids []string) string { return strings.Join(ids, ",") }
