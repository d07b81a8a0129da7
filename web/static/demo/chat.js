// chat.js — the support chat widget: a button that opens a panel, the
// queue position while waiting, the agent's name once assigned, and the
// lines both ways.
//
// Lines are keyed by their server id, so a line that comes as a live
// chat.msg, in the history fetched after a reconnect, and in the answer to
// our own send shows once. Our own lines show at once as "sending…",
// keyed by their client_msg_id until the chat.ack names their id.

import { newClientMsgID, laterID } from "/pushdesk.js";
import { el, timeOf, iso, errorText } from "./util.js";
import { lineElement, placeLine, nearBottom } from "./lines.js";

const HISTORY_PAGE = 50;
const MAX_BYTES = 4096; // the server refuses longer lines

export class Chat {
  /**
   * @param {object} o
   * @param {() => void} [o.onShow] called when the panel opens (the page marks chat replies read)
   * @param {(m: object) => void} [o.onInboxReply] called for an inbox reply that arrives while the panel is open
   */
  constructor(o = {}) {
    this.onShow = o.onShow || (() => {});
    this.onInboxReply = o.onInboxReply || (() => {});
    const $ = (id) => document.getElementById(id);
    this.openBtn = $("chat-open");
    this.replied = $("chat-replied");
    this.panel = $("chat-panel");
    this.statusEl = $("chat-status");
    this.linesEl = $("chat-lines");
    this.scroller = $("chat-scroll");
    this.input = $("chat-input");
    this.sendBtn = $("chat-send");
    this.closeBtn = $("chat-close");
    this.newBtn = $("chat-new");
    this.endedEl = $("chat-ended");
    this.hideBtn = $("chat-hide");
    this.earlier = $("chat-earlier");
    this.errorEl = $("chat-error");
    this.announce = $("chat-announce");
    this.form = $("chat-form");
    this.subs = [];
    this.reset();

    this.openBtn.addEventListener("click", () => (this.isOpen ? this.hide(false) : this.show()));
    this.hideBtn.addEventListener("click", () => this.hide(true));
    this.panel.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.hide(true);
    });
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("input", () => this.setError(""));
    this.closeBtn.addEventListener("click", () => this.end());
    this.newBtn.addEventListener("click", () => {
      this.startNew();
      this.input.focus();
    });
    this.earlier.addEventListener("click", () => this.loadHistory(this.cid, this.next));
    this.linesEl.addEventListener("click", (e) => {
      const b = e.target.closest(".retry");
      if (!b) return;
      const li = b.closest(".line");
      const text = li.querySelector(".text").textContent;
      li.remove();
      this.sendLine(text);
    });
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  // reset forgets the conversation (sign out, or the start of a new chat).
  reset() {
    this.cid = null;
    this.status = "none";
    this.agent = null;
    this.position = null;
    this.starting = false;
    this.next = null;
    this.lines = new Map(); // line id → li
    this.pending = new Map(); // client_msg_id → li
    this.linesEl.replaceChildren();
    this.earlier.hidden = true;
    this.setError("");
    this.renderStatus();
  }

  /** bind starts following pd's chat frames; it restores the conversation after every hello. */
  bind(pd) {
    this.pd = pd;
    this.restored = false;
    this.inboxCid = null;
    this.subs = [
      pd.on("chat", (f) => this.frame(f)),
      pd.on("hello", () => this.restore()),
      pd.on("message", (m) => {
        if (m.kind !== "chat") return;
        if (this.isOpen) this.onInboxReply(m);
        else this.setReplied(true);
        const cid = m.body && m.body.conversation_id;
        if (cid) {
          this.inboxCid = cid;
          if (this.restored) this.showEnded(cid);
        }
      }),
      pd.on("error", (f) => {
        if (f.conversation_id || f.client_msg_id) this.setError(f.msg || "The chat server refused that (" + f.code + ").");
      }),
    ];
  }

  /** unbind stops following pd and clears the widget (sign out). */
  unbind() {
    for (const off of this.subs) off();
    this.subs = [];
    this.pd = null;
    this.restoreGen = (this.restoreGen || 0) + 1;
    this.hide(false);
    this.setReplied(false);
    this.reset();
  }

  show() {
    this.panel.hidden = false;
    this.openBtn.setAttribute("aria-expanded", "true");
    this.setReplied(false);
    this.onShow();
    this.scrollDown();
    this.input.focus();
  }

  hide(refocus) {
    if (!this.isOpen) return;
    this.panel.hidden = true;
    this.openBtn.setAttribute("aria-expanded", "false");
    if (refocus) this.openBtn.focus();
  }

  setReplied(on) {
    if (on === !this.replied.hidden) return;
    this.replied.hidden = !on;
    this.openBtn.classList.toggle("replied", on);
    if (on) this.say("Support replied");
  }

  setError(text) {
    this.errorEl.textContent = text;
    this.errorEl.hidden = !text;
  }

  // say reads a short sentence to screen readers.
  say(text) {
    this.announce.textContent = "";
    requestAnimationFrame(() => { this.announce.textContent = text; });
  }

  get active() {
    return this.status === "waiting" || this.status === "open";
  }

  setStatus(status, { agent, position } = {}) {
    const stick = nearBottom(this.scroller);
    const before = this.status === "open" ? this.agent : null;
    this.status = status;
    if (agent !== undefined) this.agent = agent;
    if (position !== undefined) this.position = position;
    if (status !== "none") this.starting = false;
    this.renderStatus();
    if (stick) this.scrollDown();
    if (status === "open" && before && this.agent && before !== this.agent) this.say(`You're now chatting with ${this.agent}`);
  }

  renderStatus() {
    const s = this.status;
    this.statusEl.dataset.status = s;
    this.panel.dataset.status = s;
    let parts;
    switch (s) {
      case "waiting":
        parts = this.position
          ? ["You are number ", el("span", { id: "chat-position" }, String(this.position)), " in the queue"]
          : ["Waiting for the next free agent…"];
        break;
      case "open":
        parts = ["You're chatting with ", el("span", { id: "chat-agent" }, this.agent || "an agent")];
        break;
      case "closed":
        parts = ["This chat has ended"];
        break;
      default:
        parts = [this.starting ? "Connecting you to support…" : "Ask us anything. We usually answer within a few minutes."];
    }
    this.statusEl.replaceChildren(...parts);
    this.closeBtn.hidden = !(this.active || (this.status === "none" && this.cid));
    this.endedEl.hidden = s !== "closed";
    this.input.placeholder = s === "closed" ? "Write to start a new chat…" : "Write a message…";
  }

  startNew() {
    this.restoreGen = (this.restoreGen || 0) + 1;
    this.inboxCid = null;
    this.reset();
  }

  submit() {
    const text = this.input.value.trim();
    if (!text) return;
    if (new TextEncoder().encode(text).length > MAX_BYTES) {
      this.setError("That message is too long: please keep it under 4,000 characters.");
      return;
    }
    this.input.value = "";
    this.sendLine(text);
  }

  sendLine(text) {
    if (!this.pd) return;
    if (this.status === "closed") this.startNew();
    this.setError("");
    const cmid = newClientMsgID();
    const li = lineElement({ from: "user", text, pending: true });
    this.pending.set(cmid, li);
    this.linesEl.append(li);
    this.scrollDown();
    if (this.status === "none") {
      this.starting = true;
      this.renderStatus();
    }
    const conversationId = this.active ? this.cid : undefined;
    this.pd.chatSend(text, { conversationId, clientMsgID: cmid }).then(
      (ack) => this.acked(ack),
      (e) => this.failed(cmid, e),
    );
  }

  acked(ack) {
    if (ack.conversation_id && ack.conversation_id !== this.cid && !this.active) {
      this.cid = ack.conversation_id;
      this.renderStatus();
    }
    this.confirm(ack.client_msg_id, ack.id, ack.ts);
  }

  // confirm gives a pending line its id, or drops it when that line
  // already came some other way (the history fetched after a reconnect).
  confirm(cmid, id, ts) {
    const li = this.pending.get(cmid);
    if (!li || !id) return;
    this.pending.delete(cmid);
    if (this.lines.has(id)) {
      li.remove();
      return;
    }
    li.classList.remove("pending");
    li.dataset.id = id;
    const t = li.querySelector("time");
    t.textContent = timeOf(ts || Date.now());
    t.setAttribute("datetime", iso(ts || Date.now()));
    this.lines.set(id, li);
    placeLine(this.linesEl, li, laterID);
  }

  failed(cmid, e) {
    const li = this.pending.get(cmid);
    if (!li) return;
    this.pending.delete(cmid);
    li.classList.remove("pending");
    li.classList.add("failed");
    li.querySelector(".meta").replaceChildren("Not sent · ", el("button", { type: "button", class: "retry link" }, "Try again"));
    if (e && e.status === 409) {
      this.setStatus("closed");
      this.setError("This chat had already ended, so your message was not sent. Try again to start a new chat.");
      return;
    }
    this.starting = false;
    this.renderStatus();
    this.setError(errorText(e, "Your message was not sent"));
  }

  frame(f) {
    const cid = f.conversation_id;
    switch (f.type) {
      case "chat.ack":
        return this.acked(f);
      case "chat.queued":
        if (cid !== this.cid) this.adopt(cid);
        return this.setStatus("waiting", { position: f.position });
      case "chat.assigned":
        if (cid !== this.cid) this.adopt(cid);
        return this.setStatus("open", { agent: (f.agent && f.agent.name) || null, position: null });
      case "chat.msg":
        if (cid !== this.cid) {
          if (this.active) return; // a line of an older conversation
          this.adopt(cid);
        }
        return this.add(f, true);
      case "chat.closed":
        if (cid === this.cid && this.status !== "closed") {
          this.setStatus("closed");
          this.say("This chat has ended");
        }
    }
  }

  // adopt makes cid the conversation shown (one opened on another device,
  // or found after a reconnect), with its history.
  adopt(cid) {
    const keep = !this.cid && this.status === "none"; // lines typed before the first ack
    if (!keep) this.startNew();
    this.cid = cid;
    this.renderStatus();
    this.loadHistory(cid);
  }

  // add shows a line (live or from the history) once.
  add(l, live) {
    if (!l.id || this.lines.has(l.id)) return;
    if (l.from === "user" && l.client_msg_id && this.pending.has(l.client_msg_id)) {
      return this.confirm(l.client_msg_id, l.id, l.ts);
    }
    const stick = nearBottom(this.scroller);
    const li = lineElement({ id: l.id, from: l.from, text: l.text, ts: l.ts, agent: l.agent && l.agent.name });
    this.lines.set(l.id, li);
    placeLine(this.linesEl, li, laterID);
    if (stick) this.scrollDown();
    if (live && !l.replay && l.from === "agent") {
      if (this.isOpen && !document.hidden) this.say(`${(l.agent && l.agent.name) || "Support"}: ${l.text}`);
      else if (!this.isOpen) this.setReplied(true);
    }
  }

  /** restore finds the open or waiting conversation after a (re)connect and fetches its lines. */
  async restore() {
    const pd = this.pd;
    const gen = (this.restoreGen = (this.restoreGen || 0) + 1);
    let list;
    try {
      list = (await pd.conversations()).conversations || [];
    } catch (e) {
      if (pd === this.pd) this.setError(errorText(e, "Could not load your chat"));
      return;
    }
    if (pd !== this.pd || gen !== this.restoreGen) return;
    const cur = list.find((c) => c.status === "open" || c.status === "waiting");
    if (!cur) {
      // Ours ended while we were away. (No conversation at all may just
      // mean the first line is on its way: leave that be.)
      const mine = this.cid && list.find((c) => c.id === this.cid);
      if (mine && this.active) this.setStatus("closed");
      this.restored = true;
      if (this.inboxCid) this.showEnded(this.inboxCid);
      return;
    }
    this.restored = true;
    if (cur.id !== this.cid) this.adopt(cur.id);
    else this.loadHistory(cur.id);
    if (this.status === "none" || this.status === "closed") {
      // chat.assigned or chat.queued follows hello too; until it comes, go by the listing.
      if (cur.status === "open") this.setStatus("open", { agent: (cur.agent && cur.agent.name) || null });
      else this.setStatus("waiting");
    }
  }

  // showEnded shows a conversation that ended while the user was away,
  // when an agent's reply to it came through the inbox, so "Support
  // replied" opens onto that reply. It never replaces a live chat.
  showEnded(cid) {
    if (this.status !== "none" || this.cid || this.pending.size) return;
    this.cid = cid;
    this.setStatus("closed");
    this.loadHistory(cid);
  }

  /** loadHistory fetches a page of lines (newest first from REST) and merges it in. */
  async loadHistory(cid, before) {
    const pd = this.pd;
    if (!pd || !cid) return;
    this.earlier.disabled = true;
    try {
      const page = await pd.chatHistory(cid, { before, limit: HISTORY_PAGE });
      if (pd !== this.pd || cid !== this.cid) return;
      const stick = !before && nearBottom(this.scroller);
      const top = this.scroller.scrollHeight - this.scroller.scrollTop;
      for (const l of [...page.messages].reverse()) this.add(l, false);
      if (before || !this.next) this.next = page.next;
      this.earlier.hidden = !this.next;
      if (stick) this.scrollDown();
      else if (before) this.scroller.scrollTop = this.scroller.scrollHeight - top; // keep the view where it was
    } catch (e) {
      if (pd === this.pd) this.setError(errorText(e, "Could not load the earlier messages"));
    } finally {
      this.earlier.disabled = false;
    }
  }

  async end() {
    const pd = this.pd;
    const cid = this.cid;
    if (!pd || !cid) return;
    this.closeBtn.disabled = true;
    try {
      await pd.chatClose(cid);
      if (cid === this.cid) this.setStatus("closed");
    } catch (e) {
      if (e.status === 409 || e.status === 404) {
        if (cid === this.cid) this.setStatus("closed");
      } else {
        this.setError(errorText(e, "Could not end the chat"));
      }
    } finally {
      this.closeBtn.disabled = false;
    }
    if (this.status === "closed") this.newBtn.focus();
  }

  scrollDown() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}
