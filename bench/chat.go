// Chat mode (-mode chat): A agents connect, then U users; each user sends
// one chat.send, the sends spread evenly over -window. The tool measures
// per user chat.send → chat.assigned (through any chat.queued), retries a
// send refused with error 416 (or 503) after 50–200 ms as a client would,
// has each agent answer every conversation it is handed (and, with -close,
// close it), and then checks in MySQL that each of its users has exactly
// one conversation, held by one of its agents, handed out exactly once.
//
//	go tool task bench -- -mode chat -agents 200 -users 5000 -window 10s -pid $(pgrep -n pushdesk)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app/auth"
)

type chatConfig struct {
	agents    int
	users     int
	window    time.Duration
	close     bool
	agentBase uint64
	dsn       string
}

var chatCfg chatConfig

func init() {
	flag.IntVar(&chatCfg.agents, "agents", 200, "agents (chat mode)")
	flag.IntVar(&chatCfg.users, "users", 5000, "users, one conversation each (chat mode)")
	flag.DurationVar(&chatCfg.window, "window", 10*time.Second, "the users' chat.send are spread evenly over this window (chat mode)")
	flag.BoolVar(&chatCfg.close, "close", false, "agents close each conversation once their answer is in it (chat mode)")
	flag.Uint64Var(&chatCfg.agentBase, "agent-base", 0, "first agent id (default: random) (chat mode)")
	flag.StringVar(&chatCfg.dsn, "mysql-dsn", envOr("PUSHDESK_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/pushdesk"),
		"MySQL to check the run's conversations in afterwards; empty: no check (chat mode)")
}

// chatFrame is what chat clients parse out of every frame.
type chatFrame struct {
	Type           string `json:"type"`
	Code           int    `json:"code"`
	ConversationID string `json:"conversation_id"`
	From           string `json:"from"`
	Replay         bool   `json:"replay"`
	Agent          struct {
		ID string `json:"id"`
	} `json:"agent"`
	User struct {
		ID string `json:"id"`
	} `json:"user"`
}

type chatStats struct {
	acked, assigned, queuedFirst, queuedFrames  atomic.Int64
	err416, err503, moved, outOfOrder           atomic.Int64
	agentLinesAtUsers, closedAtUsers, parseErrs atomic.Int64
	handed, repeats, twice, foreign             atomic.Int64 // agents' chat.assigned frames
	userLinesAtAgents, replies, echoes          atomic.Int64
	agent429, closes, closedAtAgents, dropped   atomic.Int64
	orphans                                     atomic.Int64 // agents' chat.msg of conversations not handed to them

	owner   sync.Map // conversation id → agent id, from the agents' chat.assigned
	mu      sync.Mutex
	odd     map[string]int // unexpected frames by kind
	samples []string
}

// note counts an unexpected frame and keeps the first few.
func (s *chatStats) note(kind string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.odd == nil {
		s.odd = map[string]int{}
	}
	s.odd[kind]++
	if s.odd[kind] <= 2 && len(s.samples) < 12 {
		s.samples = append(s.samples, kind+": "+string(data))
	}
}

type chatUser struct {
	uid  uint64
	conn *websocket.Conn
	wmu  sync.Mutex
	sent atomic.Int64 // unix ns of the first chat.send

	mu          sync.Mutex // the reader writes these; the report reads them
	conv, agent string
	ackLat, lat time.Duration // lat: send → chat.assigned, 0 before
	queued      bool          // a chat.queued came before chat.assigned
}

func (u *chatUser) send() error {
	b := fmt.Appendf(nil, `{"type":"chat.send","text":"bench user %d needs help","client_msg_id":"b%d"}`, u.uid, u.uid)
	u.wmu.Lock()
	defer u.wmu.Unlock()
	return u.conn.WriteMessage(websocket.TextMessage, b)
}

func (u *chatUser) read(st *chatStats) {
	readFrames(u.conn, st, "user", func(f *chatFrame, data []byte, now int64) {
		since := time.Duration(now - u.sent.Load())
		switch f.Type {
		case "chat.ack":
			u.mu.Lock()
			if u.ackLat == 0 {
				u.ackLat = max(since, 1)
				if u.conv != "" && u.conv != f.ConversationID {
					st.note("user: ack names another conversation", data)
				}
				u.conv = f.ConversationID
				st.acked.Add(1)
			}
			u.mu.Unlock()
		case "chat.queued":
			st.queuedFrames.Add(1)
			u.mu.Lock()
			if u.lat == 0 && !u.queued {
				u.queued = true
				st.queuedFirst.Add(1)
			}
			u.mu.Unlock()
		case "chat.assigned":
			u.mu.Lock()
			switch {
			case u.lat == 0:
				u.lat, u.agent = max(since, 1), f.Agent.ID
				if u.ackLat == 0 {
					st.outOfOrder.Add(1)
					st.note("user: chat.assigned before chat.ack", data)
					u.conv = f.ConversationID
				}
				st.assigned.Add(1)
			case f.Agent.ID != u.agent:
				st.moved.Add(1)
				st.note("user: assigned again to another agent", data)
			}
			u.mu.Unlock()
		case "chat.msg":
			if f.From == "agent" {
				st.agentLinesAtUsers.Add(1)
			}
		case "chat.closed":
			st.closedAtUsers.Add(1)
		case "error":
			switch f.Code {
			case 416:
				st.err416.Add(1)
			case 503:
				st.err503.Add(1)
			default:
				st.note("user: error "+strconv.Itoa(f.Code), data)
				return
			}
			st.note("user: error "+strconv.Itoa(f.Code)+", retried", data)
			time.AfterFunc(time.Duration(50+rand.IntN(151))*time.Millisecond, func() { _ = u.send() })
		case "hello", "unread", "msg", "pong":
		default:
			st.note("user: "+f.Type, data)
		}
	})
}

type chatAgent struct {
	id   uint64
	conn *websocket.Conn
	out  chan []byte // to the writer: the reader never waits on a write

	mu    sync.Mutex
	convs map[string]*agentConv
}

type agentConv struct {
	userLine, echoed bool
}

func (a *chatAgent) write() {
	for b := range a.out {
		if a.conn.WriteMessage(websocket.TextMessage, b) != nil {
			return
		}
	}
}

func (a *chatAgent) queue(st *chatStats, b []byte) {
	select {
	case a.out <- b:
	default:
		st.dropped.Add(1)
	}
}

func (a *chatAgent) reply(st *chatStats, conv string) {
	st.replies.Add(1)
	a.queue(st, fmt.Appendf(nil, `{"type":"chat.send","conversation_id":%q,"text":"agent %d here, how can I help?"}`, conv, a.id))
}

func (a *chatAgent) read(st *chatStats, uidLo, uidHi uint64) {
	self := strconv.FormatUint(a.id, 10)
	readFrames(a.conn, st, "agent", func(f *chatFrame, data []byte, _ int64) {
		switch f.Type {
		case "chat.assigned":
			st.handed.Add(1)
			if uid, _ := strconv.ParseUint(f.User.ID, 10, 64); uid < uidLo || uid > uidHi {
				st.foreign.Add(1)
				st.note("agent: conversation of a user not in this run", data)
			}
			if prev, loaded := st.owner.LoadOrStore(f.ConversationID, self); loaded {
				if prev != self {
					st.twice.Add(1)
					st.note("agent: conversation handed to a second agent", data)
				} else {
					st.repeats.Add(1)
				}
				return
			}
			a.mu.Lock()
			a.convs[f.ConversationID] = &agentConv{}
			a.mu.Unlock()
			a.reply(st, f.ConversationID)
		case "chat.msg":
			a.mu.Lock()
			c := a.convs[f.ConversationID]
			first := false
			if c == nil && !f.Replay {
				st.orphans.Add(1)
				st.note("agent: line of a conversation it was not handed", data)
			}
			if c != nil && f.From == "user" && !c.userLine {
				c.userLine = true
				st.userLinesAtAgents.Add(1)
			}
			if c != nil && f.From == "agent" && !c.echoed {
				c.echoed, first = true, true
				st.echoes.Add(1)
			}
			a.mu.Unlock()
			if first && chatCfg.close {
				st.closes.Add(1)
				a.queue(st, fmt.Appendf(nil, `{"type":"chat.close","conversation_id":%q}`, f.ConversationID))
			}
		case "chat.closed":
			st.closedAtAgents.Add(1)
		case "error":
			if f.Code == 429 && f.ConversationID != "" {
				st.agent429.Add(1) // a person would wait and send it again
				conv := f.ConversationID
				time.AfterFunc(3*time.Second+time.Duration(rand.IntN(2000))*time.Millisecond, func() { a.reply(st, conv) })
				return
			}
			st.note("agent: error "+strconv.Itoa(f.Code), data)
		case "hello", "chat.ack", "agent.status", "chat.presence", "unread", "msg", "pong":
		default:
			st.note("agent: "+f.Type, data)
		}
	})
}

// readFrames parses every frame on c and hands it to on, with its time of
// receipt (unix ns), until the connection ends.
func readFrames(c *websocket.Conn, st *chatStats, who string, on func(f *chatFrame, data []byte, now int64)) {
	var buf bytes.Buffer // reused: the tool should not measure its own garbage
	for {
		_, r, err := c.NextReader()
		if err != nil {
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		now := time.Now().UnixNano()
		var f chatFrame
		if err := json.Unmarshal(buf.Bytes(), &f); err != nil {
			st.parseErrs.Add(1)
			st.note(who+": unparsable", buf.Bytes())
			continue
		}
		on(&f, buf.Bytes(), now)
	}
}

// chatDial opens client i's WebSocket with tok and reads its hello.
func chatDial(cfg config, tok string, i int) (*websocket.Conn, error) {
	u := "ws" + strings.TrimPrefix(cfg.urls[i%len(cfg.urls)], "http") + "/ws?token=" + tok
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%200))}
	d := websocket.Dialer{
		ReadBufferSize: 1024, WriteBufferSize: 1024, HandshakeTimeout: 30 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&net.Dialer{LocalAddr: local, Timeout: 30 * time.Second}).DialContext(ctx, network, addr)
		},
	}
	conn, _, err := d.Dial(u, nil)
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, data, err := conn.ReadMessage()
	var f chatFrame
	if err == nil && (json.Unmarshal(data, &f) != nil || f.Type != "hello") {
		err = fmt.Errorf("first frame is not hello: %s", data)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, nil
}

// dialEach dials n clients, cfg.dialConc at a time; it returns how many failed.
func dialEach(cfg config, what string, n int, dial func(i int) error) int {
	var failed atomic.Int64
	sem := make(chan struct{}, cfg.dialConc)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := dial(i); err != nil && failed.Add(1) <= 3 {
				fmt.Fprintf(os.Stderr, "dial %s: %v\n", what, err)
			}
		}()
	}
	wg.Wait()
	return int(failed.Load())
}

func runChat(cfg config) error {
	cc := chatCfg
	if cc.agentBase == 0 {
		cc.agentBase = uint64(rand.IntN(1_000_000))*1_000_000 + 1
	}
	tokens := auth.NewTokens(cfg.secret)
	st := &chatStats{}
	uidLo, uidHi := cfg.uidBase, cfg.uidBase+uint64(cc.users)-1
	rssBefore := rssKB(cfg.pids)

	t0 := time.Now()
	agents := make([]*chatAgent, cc.agents)
	failed := dialEach(cfg, "agent", cc.agents, func(i int) error {
		id := cc.agentBase + uint64(i)
		tok, err := tokens.Mint(auth.Identity{UID: id, Role: auth.RoleAgent, Name: fmt.Sprintf("Bench Agent %d", i)}, 2*time.Hour)
		if err != nil {
			return err
		}
		conn, err := chatDial(cfg, tok, i)
		if err != nil {
			return err
		}
		a := &chatAgent{id: id, conn: conn, out: make(chan []byte, 4096), convs: map[string]*agentConv{}}
		agents[i] = a
		go a.read(st, uidLo, uidHi)
		go a.write()
		return nil
	})
	agents = compact(agents)
	fmt.Printf("connected %d/%d agents (ids %d–%d) in %v (%d failed)\n", len(agents), cc.agents,
		cc.agentBase, cc.agentBase+uint64(cc.agents)-1, time.Since(t0).Round(time.Millisecond), failed)

	t0 = time.Now()
	users := make([]*chatUser, cc.users)
	failed = dialEach(cfg, "user", cc.users, func(i int) error {
		uid := cfg.uidBase + uint64(i)
		tok, err := tokens.Mint(auth.Identity{UID: uid}, 2*time.Hour)
		if err != nil {
			return err
		}
		conn, err := chatDial(cfg, tok, cc.agents+i)
		if err != nil {
			return err
		}
		u := &chatUser{uid: uid, conn: conn}
		users[i] = u
		go u.read(st)
		return nil
	})
	users = compact(users)
	fmt.Printf("connected %d/%d users (ids %d–%d) in %v (%d failed)\n", len(users), cc.users,
		uidLo, uidHi, time.Since(t0).Round(time.Millisecond), failed)
	if len(agents) == 0 || len(users) == 0 {
		return fmt.Errorf("nobody to chat with")
	}
	time.Sleep(cfg.quiet) // also lets the agents' settle window pass
	if len(cfg.pids) > 0 {
		fmt.Printf("server RSS: %.1f MiB before, %.1f MiB with %d connections\n",
			float64(rssBefore)/1024, float64(rssKB(cfg.pids))/1024, len(agents)+len(users))
	}
	quietGC()

	self := []int{os.Getpid()}
	cpu0, tool0, store0 := cpuTicks(cfg.pids), cpuTicks(self), cpuTicks(cfg.storePids)
	start := time.Now()
	var sendErrs int
	for i, u := range users {
		time.Sleep(time.Until(start.Add(time.Duration(i) * cc.window / time.Duration(len(users)))))
		u.sent.Store(time.Now().UnixNano())
		if u.send() != nil {
			sendErrs++
		}
	}
	fmt.Printf("chat: %d users, %d agents; %d chat.send over %v (%d write errors)\n", len(users), len(agents), len(users), time.Since(start).Round(time.Millisecond), sendErrs)
	n := int64(len(users))
	waitFor(cfg.timeout, func() bool { return st.assigned.Load() >= n }, func() {
		fmt.Fprintf(os.Stderr, "  %v: acked %d, assigned %d, queued first %d\n", time.Since(start).Round(time.Second), st.acked.Load(), st.assigned.Load(), st.queuedFirst.Load())
	})
	// The agents' answers (and closes) are on their way.
	waitFor(10*time.Second, func() bool {
		a := st.assigned.Load()
		return st.agentLinesAtUsers.Load() >= a && (!cc.close || st.closedAtUsers.Load() >= a)
	}, nil)
	span := time.Since(start)
	cpu, tool, store := cpuTicks(cfg.pids)-cpu0, cpuTicks(self)-tool0, cpuTicks(cfg.storePids)-store0

	problems := chatReport(cfg, cc, st, agents, users)
	if len(cfg.pids) > 0 {
		fmt.Printf("CPU over %v: server %.2f s, this tool %.2f s, stores %.2f s\n", span.Round(time.Millisecond), float64(cpu)/100, float64(tool)/100, float64(store)/100)
	}
	if cc.dsn != "" {
		time.Sleep(time.Second) // the server's last writes
		if err := chatCheck(cc, uidLo, uidHi, users); err != nil {
			problems = append(problems, err.Error())
		}
	}
	for _, a := range agents {
		a.conn.Close()
	}
	for _, u := range users {
		u.conn.Close()
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

func compact[T any](s []*T) []*T {
	var out []*T
	for _, v := range s {
		if v != nil {
			out = append(out, v)
		}
	}
	return out
}

// waitFor polls done until it holds or timeout passes, calling progress
// every 5 s.
func waitFor(timeout time.Duration, done func() bool, progress func()) {
	deadline, tick := time.Now().Add(timeout), time.Now().Add(5*time.Second)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if progress != nil && time.Now().After(tick) {
			progress()
			tick = tick.Add(5 * time.Second)
		}
	}
}
