// list.js — the conversation list: what this agent holds, what waits,
// and what it closed lately; kept from REST listings and chat frames,
// newest activity first.

import { $, el, setText, setAttr, duration, clock, fullTime, userLabel } from "./util.js";

/**
 * ConvList owns the conversations the console knows and #conv-list.
 * onSelect(cid) is called when the agent picks one.
 */
export class ConvList {
  constructor(me, onSelect, signal) {
    const opts = { signal };
    this.signal = signal;
    this.me = me;
    this.onSelect = onSelect;
    this.items = new Map(); // cid → conversation
    this.nodes = new Map(); // cid → <li>
    this.selected = null;
    this.loaded = false; // a REST listing has been merged
    $("conv-list").addEventListener("click", (e) => {
      const b = e.target.closest("button[data-cid]");
      if (b) this.onSelect(b.dataset.cid);
    }, opts);
    $("conv-list").addEventListener("keydown", (e) => this.arrowKeys(e), opts);
    $("closed-toggle").addEventListener("click", () => this.showClosed($("conv-closed").hidden), opts);
  }

  get(cid) { return this.items.get(cid); }

  // ensure returns conversation cid, made if new.
  ensure(cid) {
    let c = this.items.get(cid);
    if (!c) {
      c = { id: cid, userId: "", online: null, status: "open", mine: false, gone: false, agent: null,
        unread: 0, lastAt: 0, lastText: "", lastFrom: "", openedAt: 0, position: 0, touched: 0, unreadAt: 0 };
      this.items.set(cid, c);
    }
    return c;
  }

  /**
   * merge takes a REST listing fetched from startedAt on: it names what
   * this agent may see. A change a frame brought after startedAt wins
   * over the (older) listing.
   */
  merge(list, startedAt) {
    const seen = new Set();
    for (const v of list) {
      const mine = v.status === "open" && v.agent && String(v.agent.id) === this.me.id;
      if (v.status === "open" && !mine) continue; // handed on: no longer this agent's
      seen.add(v.id);
      const c = this.ensure(v.id);
      const fresh = c.touched > startedAt;
      c.userId = v.user ? String(v.user.id) : c.userId;
      if (!fresh) {
        c.status = v.status;
        c.mine = mine;
        c.gone = false;
        if (v.user && typeof v.user.online === "boolean") c.online = v.user.online;
      }
      c.agent = v.agent || c.agent;
      c.openedAt = v.opened_at || c.openedAt;
      c.position = v.position || 0;
      if (v.last_msg_at >= c.lastAt) {
        if (v.last_msg_at > c.lastAt || !c.lastText) {
          c.lastText = v.last_text ?? c.lastText;
          if (v.last_msg_at > c.lastAt) c.lastFrom = "";
        }
        c.lastAt = v.last_msg_at;
      }
      if (c.id === this.selected && this.visible()) c.unread = 0;
      else c.unread = c.unreadAt > startedAt ? Math.max(c.unread, v.unread || 0) : v.unread || 0;
    }
    for (const [cid, c] of this.items) {
      if (seen.has(cid) || c.touched > startedAt) continue;
      if (cid !== this.selected) {
        this.items.delete(cid);
      } else if (!c.gone && c.status !== "closed") {
        c.gone = true; // handed to someone else meanwhile; the pane keeps it, read-only
        c.mine = false;
        c.takenAway = true;
      }
    }
    this.loaded = true;
    this.render();
  }

  visible() { return !document.hidden; }

  /** assigned records a chat.assigned; it answers whether the conversation is new to this agent. */
  assigned(f) {
    const c = this.ensure(f.conversation_id);
    const isNew = !(c.mine && c.status === "open" && !c.gone);
    c.status = "open";
    c.mine = true;
    c.gone = false;
    c.takenAway = false;
    c.transferredTo = "";
    c.touched = Date.now();
    if (f.user) {
      c.userId = String(f.user.id);
      if (typeof f.user.online === "boolean") c.online = f.user.online;
    }
    c.openedAt = f.opened_at || c.openedAt;
    if (!c.lastAt) c.lastAt = f.opened_at || Date.now();
    this.render();
    return isNew;
  }

  /** line takes a chat line (live or from history) as the conversation's latest, if it is. */
  line(l) {
    const c = this.items.get(l.conversation_id);
    if (!c || l.ts < c.lastAt) return;
    c.lastAt = l.ts;
    c.lastText = l.text;
    c.lastFrom = l.from === "user" ? "" : l.agent && String(l.agent.id) !== this.me.id ? l.agent.name + ":" : "You:";
    this.render();
  }

  bumpUnread(cid) {
    const c = this.items.get(cid);
    if (!c) return;
    c.unread++;
    c.unreadAt = Date.now();
    this.render();
  }

  clearUnread(cid) {
    const c = this.items.get(cid);
    if (c && c.unread) {
      c.unread = 0;
      c.unreadAt = Date.now();
      this.render();
    }
  }

  presence(cid, online) {
    const c = this.items.get(cid);
    if (!c) return;
    c.online = online;
    c.touched = Date.now();
    this.render();
  }

  closed(cid) {
    const c = this.items.get(cid);
    if (!c) return;
    c.status = "closed";
    c.touched = Date.now();
    c.unread = 0;
    this.render();
  }

  /** transferred takes a conversation this agent handed on off the list (the pane may keep showing it). */
  transferred(cid, toName) {
    const c = this.items.get(cid);
    if (!c) return;
    c.gone = true;
    c.mine = false;
    c.transferredTo = toName;
    c.touched = Date.now();
    c.unread = 0;
    if (cid !== this.selected) this.items.delete(cid);
    this.render();
  }

  select(cid) {
    const prev = this.selected;
    this.selected = cid;
    const p = this.items.get(prev);
    if (p && p.gone) this.items.delete(prev);
    this.render();
  }

  /** order is the listed conversations as shown: active ones, then closed ones, newest activity first. */
  order() {
    const newest = (a, b) => b.lastAt - a.lastAt || (a.id < b.id ? 1 : -1);
    const shown = [...this.items.values()].filter((c) => !c.gone);
    const active = shown.filter((c) => c.status !== "closed").sort(newest);
    const closed = shown.filter((c) => c.status === "closed").sort(newest);
    return { active, closed };
  }

  /** neighbour is the conversation step (+1/-1) away from the selected one in the list. */
  neighbour(step) {
    const { active, closed } = this.order();
    const all = $("conv-closed").hidden ? active : [...active, ...closed];
    if (!all.length) return null;
    const i = all.findIndex((c) => c.id === this.selected);
    if (i < 0) return all[step > 0 ? 0 : all.length - 1].id;
    const j = i + step;
    return j >= 0 && j < all.length ? all[j].id : null;
  }

  focusItem(cid) {
    this.nodes.get(cid)?.querySelector("button").focus();
  }

  arrowKeys(e) {
    if (e.altKey || e.ctrlKey || e.metaKey || (e.key !== "ArrowDown" && e.key !== "ArrowUp")) return;
    const buttons = [...$("conv-list").querySelectorAll("button[data-cid]")];
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    buttons[Math.max(0, Math.min(buttons.length - 1, i + (e.key === "ArrowDown" ? 1 : -1)))].focus();
  }

  // ---- rendering ----

  render() {
    if (this.signal.aborted) return; // signed out: the DOM is not ours any more
    const focused = document.activeElement;
    const { active, closed } = this.order();
    this.place($("conv-active"), active);
    this.place($("conv-closed"), closed);
    for (const [cid, li] of this.nodes) {
      const c = this.items.get(cid);
      if (!c || c.gone) {
        li.remove();
        this.nodes.delete(cid);
      }
    }
    $("closed-group").hidden = closed.length === 0;
    setText($("count-closed"), closed.length);
    if (closed.some((c) => c.id === this.selected)) this.showClosed(true);
    $("conv-empty").hidden = active.length > 0;
    const waiting = active.filter((c) => c.status === "waiting").length;
    setText($("count-waiting"), waiting);
    setText($("count-mine"), active.length - waiting);
    const unread = active.reduce((n, c) => n + c.unread, 0);
    const title = (unread ? `(${unread}) ` : "") + "Pushdesk Console";
    if (document.title !== title) document.title = title;
    if (focused && focused !== document.activeElement && focused.isConnected) focused.focus({ preventScroll: true });
  }

  /** showClosed opens or folds the "Recently closed" group. */
  showClosed(open) {
    $("conv-closed").hidden = !open;
    setAttr($("closed-toggle"), "aria-expanded", String(open));
  }

  // place puts the items of convs into ul in that order, each updated.
  place(ul, convs) {
    convs.forEach((c, i) => {
      let li = this.nodes.get(c.id);
      if (!li) {
        li = this.build(c);
        this.nodes.set(c.id, li);
      }
      this.update(li, c);
      if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
    });
    while (ul.children.length > convs.length) ul.lastElementChild.remove();
  }

  build(c) {
    const b = el("button", { type: "button", class: "conv", "data-cid": c.id },
      el("span", { class: "conv-top" },
        el("span", { class: "who" }),
        el("span", { class: "presence" }),
        el("time", { class: "when" })),
      el("span", { class: "conv-mid" },
        el("span", { class: "last-who" }),
        el("span", { class: "last" }),
        el("span", { class: "unread badge", hidden: true }),
        el("span", { class: "sr-only unread-sr" })),
      el("span", { class: "conv-foot" },
        el("span", { class: "wait" }),
        el("span", { class: "pos" })));
    return el("li", {}, b);
  }

  update(li, c) {
    const b = li.firstElementChild;
    const q = (s) => b.querySelector(s);
    setAttr(b, "data-status", c.status);
    setAttr(b, "aria-current", c.id === this.selected ? "true" : null);
    setText(q(".who"), c.userId ? userLabel(c.userId) : "Conversation " + c.id);
    const pres = q(".presence");
    if (c.online === null || c.status === "closed") {
      setText(pres, "");
      setAttr(pres, "hidden", true);
    } else {
      setText(pres, c.online ? "online" : "offline");
      setAttr(pres, "hidden", null);
    }
    setAttr(pres, "data-online", c.online === null ? null : String(c.online));
    const when = q(".when");
    setText(when, clock(c.lastAt));
    setAttr(when, "datetime", c.lastAt ? new Date(c.lastAt).toISOString() : null);
    setAttr(when, "title", fullTime(c.lastAt));
    setText(q(".last-who"), c.lastFrom);
    setText(q(".last"), c.lastText || (c.status === "waiting" ? "Waiting for an agent" : "No lines yet"));
    const badge = q(".unread");
    setText(badge, c.unread);
    setAttr(badge, "hidden", c.unread === 0);
    setText(q(".unread-sr"), c.unread ? ` ${c.unread} unread` : "");
    const foot = q(".conv-foot");
    setAttr(foot, "hidden", c.status !== "waiting");
    setText(q(".wait"), c.status === "waiting" ? "waiting " + duration(Date.now() - (c.openedAt || c.lastAt)) : "");
    setText(q(".pos"), c.status === "waiting" && c.position ? `#${c.position} in queue` : "");
  }

  /** tick refreshes the wait times. */
  tick() {
    for (const [cid, li] of this.nodes) {
      const c = this.items.get(cid);
      if (c && c.status === "waiting") this.update(li, c);
    }
  }
}
