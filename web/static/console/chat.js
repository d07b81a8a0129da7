// chat.js — the chat pane: a conversation's lines (REST history merged
// with live frames by id), scrolling back, and the composer with its
// optimistic "sending…" lines.

import { laterID, newClientMsgID } from "/pushdesk.js";
import { $, el, setText, setAttr, compareLines, lineTime, fullTime, userLabel, errorText, duration } from "./util.js";

const PAGE = 50;
const CATCH_UP_PAGES = 20; // after a reconnect, pages fetched back to close a gap at most

/** ChatPane shows one conversation at a time; threads keep every conversation's lines. */
export class ChatPane {
  constructor(pd, me, list, signal) {
    const opts = { signal };
    this.signal = signal;
    this.pd = pd;
    this.me = me;
    this.list = list;
    this.threads = new Map(); // cid → {byId, pending, next, loading, draft, error}
    this.cid = null;
    this.scroller = $("chat-scroll");
    this.lines = $("chat-lines");
    this.input = $("chat-input");
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
    }, opts);
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
        e.preventDefault();
        this.send();
        // Some input paths (synthetic key events, a few IMEs) still insert
        // the Enter's line break after a cancelled keydown: drop it.
        this.enterAt = performance.now();
      }
    }, opts);
    const justSent = () => performance.now() - (this.enterAt || -1e9) < 250;
    this.input.addEventListener("beforeinput", (e) => {
      if (justSent() && (e.inputType === "insertLineBreak" || e.inputType === "insertParagraph" ||
        (e.inputType === "insertText" && /^[\r\n]+$/.test(e.data || "")))) e.preventDefault();
    }, opts);
    this.input.addEventListener("input", () => {
      if (justSent() && /^[\r\n]+$/.test(this.input.value)) this.input.value = "";
      this.grow();
    }, opts);
    $("load-earlier").addEventListener("click", () => this.loadEarlier(), opts);
    $("new-lines").addEventListener("click", () => this.toBottom(), opts);
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < 40) this.loadEarlier();
      if (this.atBottom()) $("new-lines").hidden = true;
    }, { passive: true, signal });
  }

  thread(cid) {
    let t = this.threads.get(cid);
    if (!t) {
      t = { byId: new Map(), pending: new Map(), next: undefined, loading: false, draft: "", error: "" };
      this.threads.set(cid, t);
    }
    return t;
  }

  conv() { return this.cid && this.list.get(this.cid); }

  /** writable: the agent holds the selected conversation and it is open. */
  writable() {
    const c = this.conv();
    return !!c && c.mine && c.status === "open" && !c.gone;
  }

  // ---- selecting ----

  show(cid) {
    if (this.cid && this.cid !== cid) this.thread(this.cid).draft = this.input.value;
    const changed = this.cid !== cid;
    this.cid = cid;
    $("chat-pane").hidden = false;
    $("no-selection").hidden = true;
    if (changed) {
      const t = this.thread(cid);
      this.input.value = t.draft;
      this.grow();
      this.error(t.error);
      this.lines.replaceChildren();
      this.lines.setAttribute("aria-busy", "true");
      const frag = document.createDocumentFragment();
      for (const l of [...t.byId.values()].sort(compareLines)) frag.append(this.lineEl(l));
      for (const p of t.pending.values()) frag.append(this.pendingEl(p));
      this.lines.append(frag);
      this.lines.setAttribute("aria-busy", "false");
      $("new-lines").hidden = true;
      this.toBottom();
      if (t.next === undefined || t.stale) this.loadLatest(cid);
    }
    this.render();
  }

  hide() {
    if (this.cid) this.thread(this.cid).draft = this.input.value;
    this.cid = null;
    $("chat-pane").hidden = true;
    $("no-selection").hidden = false;
  }

  // ---- header, composer state ----

  render() {
    const c = this.conv();
    if (!c) return;
    const t = this.thread(c.id);
    const bottom = this.atBottom(); // the note and the buttons below change the height: stay at the newest line
    setText($("chat-title"), c.userId ? userLabel(c.userId) : "Conversation " + c.id);
    const pres = $("user-presence");
    setText(pres, c.online ? "online" : "offline");
    setAttr(pres, "data-online", String(!!c.online));
    setAttr(pres, "hidden", c.status === "closed" || c.gone);
    const bits = [];
    if (c.openedAt) bits.push("opened " + lineTime(c.openedAt));
    if (c.status === "waiting") bits.push("waiting " + duration(Date.now() - (c.openedAt || c.lastAt)));
    setText($("chat-meta"), bits.join(" · "));
    setAttr($("chat-meta"), "title", `Conversation ${c.id}` + (c.openedAt ? `, opened ${fullTime(c.openedAt)}` : ""));
    let note = "";
    const readonly = c.status === "closed" || c.gone;
    if (c.transferredTo) note = `You transferred this conversation to ${c.transferredTo}. You can read it but no longer write here.`;
    else if (c.gone) note = "This conversation went to another agent. You can read it but no longer write here.";
    else if (c.status === "closed") note = "This conversation is closed.";
    else if (c.status === "waiting") {
      note = "Waiting for an agent" + (c.position ? ` (#${c.position} in the queue)` : "") +
        ". It is handed out automatically to the next agent with room.";
    }
    setText($("chat-note"), note);
    setAttr($("chat-note"), "hidden", !note);
    setAttr($("chat-pane"), "data-readonly", readonly ? "true" : null);
    setAttr($("chat-pane"), "data-status", c.gone ? "gone" : c.status);
    const w = this.writable();
    this.input.disabled = !w;
    $("chat-send").disabled = !w;
    $("chat-close").disabled = !w;
    $("transfer-btn").disabled = !w;
    $("transfer-select").disabled = !w || $("transfer-select").options.length < 2;
    $("chat-actions").hidden = !w;
    this.input.placeholder = w ? "Write a reply…" : readonly ? "Read-only" : "You can reply once it is assigned to you";
    setText($("composer-label"), "Reply to " + (c.userId ? userLabel(c.userId) : "the user"));
    const more = t.next !== undefined && t.next !== null;
    $("load-earlier").hidden = !more;
    $("load-earlier").disabled = t.loading;
    setText($("load-earlier"), t.loading ? "Loading…" : "Load earlier lines");
    $("history-start").hidden = t.next !== null;
    if (bottom && !this.atBottom()) this.toBottom();
  }

  error(text) {
    if (this.cid) this.thread(this.cid).error = text;
    setText($("chat-error"), text);
    $("chat-error").hidden = !text;
  }

  grow() {
    const rows = Math.min(6, Math.max(2, this.input.value.split("\n").length));
    if (this.input.rows !== rows) this.input.rows = rows;
  }

  // ---- lines ----

  lineEl(l) {
    const mine = l.from === "agent" && (!l.agent || String(l.agent.id) === this.me.id);
    const who = l.from === "user" ? userLabel(this.conv()?.userId || "") : mine ? "You" : l.agent?.name || "Agent";
    return el("div", { class: "line", "data-id": l.id, "data-from": l.from, "data-ts": l.ts, "data-mine": mine ? "true" : null },
      el("div", { class: "bubble" }, el("div", { class: "text", text: l.text })),
      el("div", { class: "meta" },
        el("span", { class: "author", text: who }),
        el("time", { datetime: new Date(l.ts).toISOString(), title: fullTime(l.ts), text: lineTime(l.ts) })));
  }

  pendingEl(p) {
    return el("div", { class: "line pending", "data-from": "agent", "data-mine": "true", "data-cmid": p.cmid },
      el("div", { class: "bubble" }, el("div", { class: "text", text: p.text })),
      el("div", { class: "meta" }, el("span", { class: "author", text: "You" }), el("span", { class: "sending", text: "sending…" })));
  }

  // place inserts a line's element in time order, before the pending ones.
  place(node, l) {
    let ref = null;
    for (let k = this.lines.lastElementChild; k; k = k.previousElementSibling) {
      if (k.classList.contains("pending") || compareLines({ ts: Number(k.dataset.ts), id: k.dataset.id }, l) > 0) ref = k;
      else break;
    }
    this.lines.insertBefore(node, ref);
  }

  /**
   * add merges lines of conversation cid (frames or history) and answers
   * those that were new. Lines the agent sent replace their "sending…" copy.
   */
  add(cid, ls) {
    const t = this.thread(cid);
    const fresh = [];
    for (const l of ls) {
      if (l.client_msg_id && t.pending.delete(l.client_msg_id) && cid === this.cid) {
        this.lines.querySelector(`.pending[data-cmid="${CSS.escape(l.client_msg_id)}"]`)?.remove();
      }
      if (t.byId.has(l.id)) continue;
      const line = { id: l.id, from: l.from, text: l.text, ts: l.ts, agent: l.agent, client_msg_id: l.client_msg_id };
      t.byId.set(l.id, line);
      fresh.push(line);
    }
    if (fresh.length && cid === this.cid) {
      const bottom = this.atBottom();
      const first = this.lines.querySelector(".line[data-id]");
      const firstKey = first && { ts: Number(first.dataset.ts), id: first.dataset.id };
      const older = firstKey && fresh.every((l) => compareLines(l, firstKey) < 0);
      const height = this.scroller.scrollHeight;
      const top = this.scroller.scrollTop;
      if (fresh.length > 1) this.lines.setAttribute("aria-busy", "true");
      for (const l of fresh.sort(compareLines)) this.place(this.lineEl(l), l);
      this.lines.setAttribute("aria-busy", "false");
      if (older && !bottom) this.scroller.scrollTop = top + (this.scroller.scrollHeight - height);
      else if (bottom || fresh.some((l) => l.from === "agent" && l.agent && String(l.agent.id) === this.me.id)) this.toBottom();
      else $("new-lines").hidden = false;
    }
    for (const l of fresh) this.list.line({ ...l, conversation_id: cid });
    return fresh;
  }

  /** reconnected marks every thread but the shown one for a catch-up when it is next shown. */
  reconnected() {
    for (const [cid, t] of this.threads) if (cid !== this.cid && t.next !== undefined) t.stale = true;
    if (this.cid) this.loadLatest(this.cid);
  }

  newestID(cid) {
    let n = "";
    for (const id of this.thread(cid).byId.keys()) if (laterID(id, n)) n = id;
    return n;
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 60;
  }

  toBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    $("new-lines").hidden = true;
  }

  // ---- history ----

  /**
   * loadLatest fetches the newest lines and merges them; after a
   * reconnect it pages back until it meets lines it had, so a gap of
   * any length closes and nothing shows twice.
   */
  async loadLatest(cid) {
    const t = this.thread(cid);
    if (t.catchingUp) return;
    t.catchingUp = true;
    t.stale = false;
    const known = t.next === undefined ? "" : this.newestID(cid);
    let before;
    try {
      for (let i = 0; i < CATCH_UP_PAGES; i++) {
        const page = await this.pd.chatHistory(cid, { before, limit: PAGE });
        const ms = page.messages || [];
        this.add(cid, ms);
        if (t.next === undefined) t.next = page.next;
        const oldest = ms[ms.length - 1];
        if (!known || !page.next || !oldest || !laterID(oldest.id, known)) break;
        before = page.next;
      }
    } catch (e) {
      if (cid === this.cid && e.status !== 403) this.error(errorText(e, "Could not load the history"));
      if (t.next === undefined && e.status === 403) t.next = null;
    } finally {
      t.catchingUp = false;
      if (cid === this.cid) this.render();
    }
  }

  async loadEarlier() {
    const cid = this.cid;
    const t = cid && this.thread(cid);
    if (!t || t.loading || !t.next) return;
    t.loading = true;
    this.render();
    try {
      const page = await this.pd.chatHistory(cid, { before: t.next, limit: PAGE });
      t.next = page.next;
      this.add(cid, page.messages || []);
    } catch (e) {
      if (cid === this.cid) this.error(errorText(e, "Could not load earlier lines"));
    } finally {
      t.loading = false;
      if (cid === this.cid) this.render();
    }
  }

  // ---- sending ----

  send() {
    const cid = this.cid;
    const text = this.input.value.replace(/^(?:[ \t]*\n)+/, "").trimEnd(); // no blank lines around it
    if (!cid || !this.writable() || !text.trim()) return;
    const t = this.thread(cid);
    const p = { cmid: newClientMsgID(), text, ts: Date.now() };
    t.pending.set(p.cmid, p);
    this.lines.append(this.pendingEl(p));
    this.toBottom();
    this.input.value = "";
    t.draft = "";
    this.grow();
    this.error("");
    this.pd.chatSend(text, { conversationId: cid, clientMsgID: p.cmid }).then(
      (ack) => this.add(cid, [{ id: ack.id, from: "agent", text, ts: ack.ts || p.ts, agent: { id: this.me.id, name: this.me.name }, client_msg_id: p.cmid }]),
      (e) => this.failed(cid, p, e),
    );
  }

  // failed takes a refused line off the pane and puts its text back in the composer.
  failed(cid, p, e) {
    const t = this.thread(cid);
    if (!t.pending.delete(p.cmid)) return;
    const msg = errorText(e, "Not sent");
    if (cid === this.cid) {
      this.lines.querySelector(`.pending[data-cmid="${CSS.escape(p.cmid)}"]`)?.remove();
      this.input.value = this.input.value ? this.input.value + "\n" + p.text : p.text;
      this.grow();
      this.error(msg);
      if (!this.input.disabled) this.input.focus();
    } else {
      t.draft = t.draft ? t.draft + "\n" + p.text : p.text;
      t.error = msg;
    }
  }
}
