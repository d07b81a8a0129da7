// actions.js — what the agent does to the selected conversation besides
// writing: close it, or transfer it to another online agent.

import { $, el, errorText } from "./util.js";

const TRANSFER_WAIT = 8000; // ms without chat.transferred or an error before we say so

/** Actions runs #chat-close, #transfer-select and #transfer-btn. */
export class Actions {
  constructor(pd, me, list, pane, signal) {
    const opts = { signal };
    this.signal = signal;
    this.pd = pd;
    this.me = me;
    this.list = list;
    this.pane = pane;
    this.agents = new Map(); // id → {id, name, status, load, capacity}
    this.transfer = null; // {cid, to, timer} while one is under way
    this.select = $("transfer-select");
    $("chat-close").addEventListener("click", () => this.close(), opts);
    $("transfer-btn").addEventListener("click", () => this.startTransfer(), opts);
    this.select.addEventListener("focus", () => this.refreshAgents(true), opts);
  }

  /** close ends the selected conversation (also Alt+C). */
  async close() {
    const cid = this.pane.cid;
    if (!cid || !this.pane.writable()) return;
    $("chat-close").disabled = true;
    this.pane.error("");
    try {
      await this.pd.chatClose(cid);
      this.list.closed(cid);
    } catch (e) {
      if (e.status === 409) this.list.closed(cid); // closed already (by the user, say)
      else if (cid === this.pane.cid) this.pane.error(errorText(e, "Could not close"));
    }
    if (cid === this.pane.cid) this.pane.render();
  }

  /** refreshAgents fills the transfer picker with the online agents other than this one. */
  async refreshAgents(force = false) {
    if (!force && document.activeElement === this.select) return; // do not pull options from under an open picker
    let res;
    try {
      res = await this.pd.agents();
    } catch {
      return;
    }
    if (this.signal.aborted) return;
    this.agents = new Map((res.agents || []).map((a) => [String(a.id), a]));
    const keep = this.select.value;
    const others = [...this.agents.values()].filter((a) => String(a.id) !== this.me.id);
    const opts = [el("option", { value: "", text: others.length ? "Transfer to…" : "No other agent online" })];
    for (const a of others) {
      const away = a.status !== "online";
      const full = a.load >= a.capacity;
      const label = `${a.name || "Agent " + a.id} — ${away ? "away" : `${a.load}/${a.capacity}`}${full && !away ? " (full)" : ""}`;
      opts.push(el("option", { value: String(a.id), text: label, disabled: away }));
    }
    const same = opts.length === this.select.options.length &&
      opts.every((o, i) => o.value === this.select.options[i].value && o.textContent === this.select.options[i].textContent &&
        o.disabled === this.select.options[i].disabled);
    if (!same) {
      this.select.replaceChildren(...opts);
      if ([...this.select.options].some((o) => o.value === keep && !o.disabled)) this.select.value = keep;
    }
    this.pane.render();
  }

  agentName(id) {
    const a = this.agents.get(String(id));
    return a && a.name ? a.name : "agent " + id;
  }

  startTransfer() {
    const cid = this.pane.cid;
    if (!cid || !this.pane.writable()) return;
    const to = this.select.value;
    if (!to) {
      this.pane.error("Choose an agent to transfer to.");
      this.select.focus();
      return;
    }
    this.pane.error("");
    try {
      this.pd.chatTransfer(cid, to);
    } catch (e) {
      this.pane.error(errorText(e, "Could not transfer"));
      return;
    }
    clearTimeout(this.transfer?.timer);
    const timer = setTimeout(() => {
      if (this.transfer?.cid !== cid) return;
      this.transfer = null;
      this.busy(false);
      if (cid === this.pane.cid) this.pane.error("The transfer got no answer. Check the list, then try again.");
    }, TRANSFER_WAIT);
    this.transfer = { cid, to, timer };
    this.busy(true);
  }

  busy(on) {
    $("transfer-btn").textContent = on ? "Transferring…" : "Transfer";
    $("transfer-btn").setAttribute("aria-busy", String(on));
  }

  /** transferred takes a chat.transferred frame: the conversation is not this agent's any more. */
  transferred(f) {
    const cid = f.conversation_id;
    if (this.transfer?.cid === cid) {
      clearTimeout(this.transfer.timer);
      this.transfer = null;
      this.busy(false);
    }
    this.list.transferred(cid, this.agentName(f.to_agent));
    if (cid === this.pane.cid) this.pane.render();
  }

  /** errorFrame takes an error frame; it answers whether it was about a transfer under way. */
  errorFrame(f) {
    if (!this.transfer || f.client_msg_id || (f.conversation_id && f.conversation_id !== this.transfer.cid)) return false;
    const cid = this.transfer.cid;
    clearTimeout(this.transfer.timer);
    this.transfer = null;
    this.busy(false);
    if (cid === this.pane.cid) this.pane.error(errorText(f, "Could not transfer"));
    this.refreshAgents(true);
    return true;
  }
}
