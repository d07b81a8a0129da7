// bell.js — the notification bell: the unread badge, and a dropdown of the
// inbox (newest first) that live "message" events keep current.
//
// The list is a model keyed by message id. A collapsed message comes again
// with the same id and a higher count, so it replaces its entry (new body,
// new time, "×N") instead of adding one. The badge shows only what the
// server's "unread" events say: the list holds one page, the count is exact.

import { el, bodyText, when, iso, errorText } from "./util.js";

const PAGE = 30;

export class Bell {
  /** @param {{onChat?: (conversationId: string) => void}} o */
  constructor(o = {}) {
    this.onChat = o.onChat || (() => {});
    this.button = document.getElementById("bell");
    this.badge = document.getElementById("bell-badge");
    this.panel = document.getElementById("bell-list");
    this.list = document.getElementById("bell-items");
    this.empty = document.getElementById("bell-empty");
    this.more = document.getElementById("bell-more");
    this.error = document.getElementById("bell-error");
    this.markAll = document.getElementById("mark-all-read");
    this.announce = document.getElementById("bell-announce");
    this.items = new Map(); // id → {id, kind, body, ts, count, read, broadcast}
    this.rows = new Map(); // id → {li, sig}: the list's elements
    this.total = 0;
    this.next = null;
    this.subs = [];

    this.button.addEventListener("click", () => this.toggle());
    this.markAll.addEventListener("click", () => this.readAll());
    this.more.addEventListener("click", () => this.load(this.next));
    this.list.addEventListener("click", (e) => this.clicked(e));
    this.panel.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.stopPropagation();
        this.hide(true);
      }
    });
    this.button.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.isOpen) this.hide(true);
    });
    document.addEventListener("pointerdown", (e) => {
      if (this.isOpen && !this.panel.contains(e.target) && !this.button.contains(e.target)) this.hide(false);
    });
    setInterval(() => { if (this.isOpen) this.render(); }, 30e3); // "5 min ago" moves on
    this.setUnread(0);
    this.render();
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  /** bind starts following pd's events. */
  bind(pd) {
    this.pd = pd;
    this.subs = [
      pd.on("message", (m) => this.upsert(m)),
      pd.on("unread", (u) => this.setUnread(u.total)),
      pd.on("hello", () => { if (this.isOpen) this.load(); }),
    ];
  }

  /** unbind stops following pd and forgets everything (sign out). */
  unbind() {
    for (const off of this.subs) off();
    this.subs = [];
    this.pd = null;
    this.items.clear();
    this.next = null;
    this.hide(false);
    this.setUnread(0);
    this.setError("");
    this.render();
  }

  toggle() {
    if (this.isOpen) this.hide(false);
    else this.show();
  }

  show() {
    this.panel.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    this.load();
    (this.markAll.disabled ? this.panel : this.markAll).focus();
  }

  hide(refocus) {
    if (!this.isOpen) return;
    this.panel.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (refocus) this.button.focus();
  }

  setUnread(total) {
    this.total = Number(total) || 0;
    this.badge.textContent = String(this.total);
    this.badge.hidden = this.total === 0;
    this.button.setAttribute("aria-label", this.total === 1 ? "Notifications, 1 unread" : `Notifications, ${this.total} unread`);
    this.markAll.disabled = this.total === 0 && ![...this.items.values()].some((m) => !m.read);
  }

  setError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  // upsert takes a live or replayed message: new, or a collapsed one again.
  upsert(m) {
    const old = this.items.get(m.id);
    const count = m.count || 1;
    if (old && old.count > count) return; // an older push of a message we have newer
    this.items.set(m.id, {
      id: m.id, kind: m.kind, body: m.body, ts: m.ts, count,
      read: false, broadcast: !!m.broadcast,
    });
    this.render();
    if (!m.replay) this.announce.textContent = "New notification: " + bodyText(m.body);
  }

  /** load fetches a page of the inbox (the first one, or the one before id) and merges it. */
  async load(before) {
    if (!this.pd) return;
    const pd = this.pd;
    this.panel.setAttribute("aria-busy", "true");
    try {
      const page = await pd.messages({ limit: PAGE, before: before || undefined });
      if (pd !== this.pd) return;
      for (const m of page.messages) {
        const old = this.items.get(m.id);
        const count = m.count || 1;
        if (old && old.count > count) continue; // a push newer than this answer
        // Read only goes one way for the same count: a mark-read that went
        // out while this page was on its way wins over the page.
        const read = !!m.read || !!(old && old.read && old.count === count);
        this.items.set(m.id, {
          id: m.id, kind: m.kind, body: m.body, ts: m.ts, count,
          read, broadcast: !!m.broadcast,
        });
      }
      if (!before || this.next) this.next = page.next;
      this.setError("");
    } catch (e) {
      if (pd === this.pd) this.setError(errorText(e, "Could not load notifications"));
    } finally {
      this.panel.removeAttribute("aria-busy");
    }
    this.render();
  }

  async markRead(ids) {
    const pd = this.pd;
    const items = ids.map((id) => this.items.get(id)).filter((m) => m && !m.read);
    if (!pd || !items.length) return;
    for (const m of items) m.read = true;
    this.render();
    try {
      await pd.read(items.map((m) => m.id));
      this.setError("");
    } catch (e) {
      for (const m of items) m.read = false;
      this.setError(errorText(e, "Could not mark it read"));
      this.render();
    }
  }

  /** readKind marks every unread message of one kind read (the chat reads its own replies). */
  readKind(kind) {
    this.markRead([...this.items.values()].filter((m) => m.kind === kind && !m.read).map((m) => m.id));
  }

  /** unreadOfKind lists the unread messages of a kind the bell holds. */
  unreadOfKind(kind) {
    return [...this.items.values()].filter((m) => m.kind === kind && !m.read);
  }

  async readAll() {
    const pd = this.pd;
    if (!pd) return;
    const was = [...this.items.values()].filter((m) => !m.read);
    for (const m of was) m.read = true;
    this.render();
    try {
      await pd.readAll();
      this.setError("");
    } catch (e) {
      for (const m of was) m.read = false;
      this.setError(errorText(e, "Could not mark all read"));
      this.render();
    }
  }

  clicked(e) {
    const li = e.target.closest("li[data-id]");
    if (!li) return;
    const m = this.items.get(li.dataset.id);
    if (!m) return;
    if (e.target.closest(".mark-read")) {
      // Keep the focus in the list: the button goes away with the item's unread state.
      const near = li.nextElementSibling || li.previousElementSibling;
      const nearID = near && near.dataset.id;
      this.markRead([m.id]); // renders at once, before the answer
      const target = (nearID && this.list.querySelector(`li[data-id="${nearID}"] .mark-read`)) ||
        (this.markAll.disabled ? this.panel : this.markAll);
      target.focus();
      return;
    }
    if (e.target.closest(".open-chat")) {
      this.hide(false);
      this.onChat(m.body && m.body.conversation_id);
    }
  }

  sorted() {
    return [...this.items.values()].sort((a, b) => (b.ts - a.ts) || (b.id.length - a.id.length) || (b.id < a.id ? -1 : b.id > a.id ? 1 : 0));
  }

  // render updates the list in place: rows are kept per id and rebuilt
  // only when they changed, so a new message does not pull the focus or
  // the node a click is aimed at out from under the user.
  render() {
    const now = Date.now();
    const items = this.sorted();
    const keep = new Set(items.map((m) => m.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.li.remove();
        this.rows.delete(id);
      }
    }
    let prev = null;
    let unread = false;
    for (const m of items) {
      let row = this.rows.get(m.id);
      if (!row) {
        row = { li: el("li", { "data-id": m.id }), sig: "" };
        this.rows.set(m.id, row);
      }
      const sig = [m.read, m.count, m.ts, when(m.ts, now), JSON.stringify(m.body)].join("|");
      if (row.sig !== sig) {
        this.fill(row.li, m, now);
        row.sig = sig;
      }
      const at = prev ? prev.nextElementSibling : this.list.firstElementChild;
      if (at !== row.li) {
        if (prev) prev.after(row.li);
        else this.list.prepend(row.li);
      }
      prev = row.li;
      unread ||= !m.read;
    }
    this.empty.hidden = items.length > 0;
    this.more.hidden = !this.next;
    this.markAll.disabled = this.total === 0 && !unread;
  }

  fill(li, m, now) {
    const text = bodyText(m.body);
    const chat = m.kind === "chat";
    const who = chat && m.body && m.body.agent && m.body.agent.name;
    const label = m.broadcast ? "Announcement" : chat ? (who ? `Support · ${who}` : "Support") : m.kind;
    const title = !chat && m.body && typeof m.body.title === "string" && m.body.title !== text ? m.body.title : null;
    li.dataset.read = String(m.read);
    li.dataset.kind = m.kind;
    li.classList.toggle("broadcast", m.broadcast);
    li.replaceChildren(...[
      el("span", { class: "dot", "aria-hidden": "true" }),
      el("div", { class: "body" },
        el("div", { class: "meta" },
          el("span", { class: "kind" }, label),
          el("time", { datetime: iso(m.ts) }, when(m.ts, now)),
          m.read ? null : el("span", { class: "sr-only" }, "(unread)")),
        title ? el("div", { class: "title" }, title) : null,
        el("div", { class: "text" }, text),
        chat ? el("button", { type: "button", class: "open-chat link" }, "Open chat") : null),
      m.count > 1 ? el("span", { class: "count", title: `${m.count} of these` }, "×" + m.count) : null,
      m.read ? null : el("button", { type: "button", class: "mark-read", "aria-label": "Mark read: " + text, title: "Mark read" },
        el("span", { "aria-hidden": "true" }, "✓")),
    ].filter(Boolean));
  }
}
