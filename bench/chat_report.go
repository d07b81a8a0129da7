package main

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

// chatReport prints what the chat run's frames showed and returns what
// went wrong in them.
func chatReport(cfg config, cc chatConfig, st *chatStats, agents []*chatAgent, users []*chatUser) (problems []string) {
	var lat, ackLat []time.Duration
	never, mismatch := 0, 0
	for _, u := range users {
		u.mu.Lock()
		if u.lat > 0 && u.lat <= cfg.timeout {
			lat = append(lat, u.lat)
		} else {
			never++
		}
		if u.ackLat > 0 {
			ackLat = append(ackLat, u.ackLat)
		}
		if u.lat > 0 {
			if owner, ok := st.owner.Load(u.conv); !ok || owner != u.agent {
				mismatch++
			}
		}
		u.mu.Unlock()
	}
	var per []int
	for _, a := range agents {
		a.mu.Lock()
		per = append(per, len(a.convs))
		a.mu.Unlock()
	}
	sort.Ints(per)
	fmt.Printf("acked %d; assigned %d, never assigned %d (within %v); queued first %d (%d chat.queued frames)\n",
		st.acked.Load(), len(lat), never, cfg.timeout, st.queuedFirst.Load(), st.queuedFrames.Load())
	fmt.Printf("errors 416: %d, 503: %d (each retried after 50–200 ms)\n", st.err416.Load(), st.err503.Load())
	fmt.Printf("send→assigned latency: p50 %v  p90 %v  p99 %v  max %v\n", pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))
	fmt.Printf("send→ack latency:      p50 %v  p90 %v  p99 %v  max %v\n", pct(ackLat, 50), pct(ackLat, 90), pct(ackLat, 99), pct(ackLat, 100))
	fmt.Printf("conversations per agent: min %d  median %d  max %d (%d handed out, %d repeated, %d to a second agent, %d of other users)\n",
		per[0], per[len(per)/2], per[len(per)-1], st.handed.Load()-st.repeats.Load(), st.repeats.Load(), st.twice.Load(), st.foreign.Load())
	fmt.Printf("user lines at agents %d; agent answers sent %d, echoed %d, at users %d (429: %d, dropped %d)",
		st.userLinesAtAgents.Load(), st.replies.Load(), st.echoes.Load(), st.agentLinesAtUsers.Load(), st.agent429.Load(), st.dropped.Load())
	if cc.close {
		fmt.Printf("; closed %d, chat.closed at users %d, at agents %d", st.closes.Load(), st.closedAtUsers.Load(), st.closedAtAgents.Load())
	}
	fmt.Println()
	fmt.Printf("frames disagreeing: %d users whose agent did not get their conversation, %d agent lines of conversations not handed to them, %d assigned before ack, %d moved, %d unparsable\n",
		mismatch, st.orphans.Load(), st.outOfOrder.Load(), st.moved.Load(), st.parseErrs.Load())
	st.mu.Lock()
	for k, v := range st.odd {
		fmt.Printf("unexpected: %d × %s\n", v, k)
	}
	for _, s := range st.samples {
		fmt.Println("  e.g.", s)
	}
	st.mu.Unlock()
	if never > 0 {
		problems = append(problems, fmt.Sprintf("%d users never assigned", never))
	}
	if t := st.twice.Load() + int64(mismatch); t > 0 {
		problems = append(problems, fmt.Sprintf("%d conversations with two owners in the frames", t))
	}
	return problems
}

// chatCheck looks at the run's users' conversations and hand-outs in
// MySQL: one conversation per user, each held by one of the run's agents,
// one chat_holds row each (naming that agent), and the same conversation
// ids and agents the frames named.
func chatCheck(cc chatConfig, uidLo, uidHi uint64, users []*chatUser) error {
	db, err := sql.Open("mysql", cc.dsn)
	if err != nil {
		return fmt.Errorf("sql check: %w", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, `SELECT c.id, c.user_id, COALESCE(c.agent_id, 0), c.status,
		COUNT(h.conversation_id), COALESCE(SUM(h.agent_id <> COALESCE(c.agent_id, 0)), 0), COALESCE(GROUP_CONCAT(h.reason), '')
		FROM chat_conversations c LEFT JOIN chat_holds h ON h.conversation_id = c.id
		WHERE c.user_id BETWEEN ? AND ? GROUP BY c.id, c.user_id, c.agent_id, c.status`, uidLo, uidHi)
	if err != nil {
		return fmt.Errorf("sql check: %w", err)
	}
	defer rows.Close()
	type conv struct{ id, agent uint64 }
	perUser := map[uint64][]conv{}
	statuses, reasons := map[string]int{}, map[string]int{}
	n, noAgent, strangeAgent, noHold, manyHolds, otherHolder := 0, 0, 0, 0, 0, 0
	agentHi := cc.agentBase + uint64(cc.agents) - 1
	for rows.Next() {
		var id, user, agent uint64
		var holds, other int
		var status, rs string
		if err := rows.Scan(&id, &user, &agent, &status, &holds, &other, &rs); err != nil {
			return fmt.Errorf("sql check: %w", err)
		}
		n++
		perUser[user] = append(perUser[user], conv{id, agent})
		statuses[status]++
		for _, r := range strings.Split(rs, ",") {
			if r != "" {
				reasons[r]++
			}
		}
		switch {
		case agent == 0:
			noAgent++
		case agent < cc.agentBase || agent > agentHi:
			strangeAgent++
		}
		switch {
		case holds == 0:
			noHold++
		case holds > 1:
			manyHolds++
		}
		otherHolder += other
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sql check: %w", err)
	}
	noConv, manyConv, idDiffers, agentDiffers := 0, 0, 0, 0
	for _, u := range users {
		cs := perUser[u.uid]
		switch {
		case len(cs) == 0:
			noConv++
		case len(cs) > 1:
			manyConv++
		}
		u.mu.Lock()
		if len(cs) == 1 && u.conv != "" {
			if strconv.FormatUint(cs[0].id, 10) != u.conv {
				idDiffers++
			} else if u.agent != "" && strconv.FormatUint(cs[0].agent, 10) != u.agent {
				agentDiffers++
			}
		}
		u.mu.Unlock()
	}
	fmt.Printf("SQL: %d conversations of %d/%d users (%d users with none, %d with more than one); statuses %v\n",
		n, len(perUser), len(users), noConv, manyConv, statuses)
	fmt.Printf("SQL: %d without an agent, %d with an agent not in this run; chat_holds reasons %v: %d conversations with no row, %d with more than one, %d rows naming another agent\n",
		noAgent, strangeAgent, reasons, noHold, manyHolds, otherHolder)
	fmt.Printf("SQL against the frames: %d conversation ids differ, %d agents differ\n", idDiffers, agentDiffers)
	if bad := noConv + manyConv + noAgent + strangeAgent + noHold + manyHolds + otherHolder + idDiffers + agentDiffers; bad > 0 {
		return fmt.Errorf("sql check: %d problems", bad)
	}
	fmt.Println("SQL check: ok")
	return nil
}
