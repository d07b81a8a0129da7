// pushdesk.js — the browser client for Pushdesk (docs/client.md).
//
// One dependency-free ES module: a WebSocket connection that falls back to
// SSE (with REST for what the page sends) when WebSocket cannot open,
// reconnects with exponential backoff and full jitter, resumes without
// gaps, drops the duplicates the server's at-least-once pushes bring, and
// acknowledges what it handed to the page.
//
//   const pd = new Pushdesk({ token });
//   pd.on("message", (m) => show(m));
//   pd.on("unread", (u) => badge(u.total));
//   pd.connect();

const CHAT_FRAMES = ["chat.ack", "chat.assigned", "chat.queued", "chat.msg", "chat.closed",
  "chat.transferred", "chat.presence", "agent.status"];
const SEEN_LIMIT = 5000; // ids remembered for dedupe
const WS_FAILS_BEFORE_SSE = 2; // WebSocket attempts that never opened before trying SSE

/** An error answer from Pushdesk: the contract's error body, or a network failure (status 0). */
export class PushdeskError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.name = "PushdeskError";
    this.status = status;
    this.code = code;
  }
}

/** retryHint reads the wait a 1013 close asks for ("retry_ms=<n>" in its reason), or 0. */
export function retryHint(e) {
  if (!e || e.code !== 1013) return 0;
  const m = /retry_ms=(\d+)/.exec(e.reason || "");
  return m ? Math.min(Number(m[1]), 60000) : 0;
}

/** backoff is the wait before reconnect attempt n: full jitter over an exponential cap. */
export function backoff(attempt, base = 500, cap = 30000) {
  return Math.random() * Math.min(cap, base * 2 ** attempt);
}

/** newClientMsgID makes a chat line's client id (crypto.randomUUID needs a secure context). */
export function newClientMsgID() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** laterID reports whether message id a sorts after b (ids are decimal strings of 63-bit numbers). */
export function laterID(a, b) {
  if (!b) return true;
  return a.length !== b.length ? a.length > b.length : a > b;
}

const defaultBase = new URL(".", import.meta.url).origin;

// call fetches and decodes a JSON answer, throwing PushdeskError for a
// non-2xx one (with Retry-After, in seconds, when the server sent it).
async function call(url, init) {
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new PushdeskError(0, "network", String(e.message || e));
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new PushdeskError(res.status, err.code || "http_" + res.status, err.message || res.statusText);
    e.retryAfter = Number(res.headers.get("Retry-After")) || 0;
    throw e;
  }
  return data;
}

export class Pushdesk {
  /**
   * @param {object} o
   * @param {string|(() => string|Promise<string>)} o.token a user or agent JWT, or a function giving a fresh one
   * @param {string} [o.base] Pushdesk's origin; defaults to where this module was loaded from
   * @param {"auto"|"ws"|"sse"} [o.transport]
   * @param {boolean} [o.autoAck] acknowledge each message after the "message" listeners ran (default true)
   */
  constructor(o) {
    this.base = (o.base || defaultBase).replace(/\/$/, "");
    this.tokenSource = o.token;
    this.mode = o.transport || "auto";
    this.autoAck = o.autoAck !== false;
    this.listeners = new Map();
    this.seen = new Set();
    this.seenChat = new Set();
    this.pending = new Map(); // client_msg_id → {req, resolve, reject}
    this.ackQueue = [];
    this.state = "idle";
    this.transport = null;
    this.attempt = 0;
    this.wsFails = 0;
    this.lastID = "";
    this.hello = null;
    this.stopped = true;
    this.onPageHide = () => this.close();
    this.onOnline = () => { if (this.state === "reconnecting") this.reconnectNow(); };
  }

  /** on subscribes to "state", "hello", "message", "unread", "chat", "error" or "auth"; returns the unsubscribe. */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  emit(type, v) {
    for (const fn of this.listeners.get(type) || []) {
      try { fn(v); } catch (e) { console.error("pushdesk listener", type, e); }
    }
  }

  setState(state, extra = {}) {
    this.state = state;
    this.emit("state", { state, transport: this.transport, attempt: this.attempt, ...extra });
  }

  async token() {
    return typeof this.tokenSource === "function" ? await this.tokenSource() : this.tokenSource;
  }

  /** connect opens the stream; it keeps reconnecting until close(). */
  connect() {
    if (!this.stopped) return;
    this.stopped = false;
    addEventListener("pagehide", this.onPageHide);
    addEventListener("online", this.onOnline);
    this.open();
  }

  /** close ends the stream and stops reconnecting. */
  close() {
    this.stopped = true;
    removeEventListener("pagehide", this.onPageHide);
    removeEventListener("online", this.onOnline);
    clearTimeout(this.retryTimer);
    this.teardown();
    this.setState("closed");
  }

  teardown() {
    clearInterval(this.pingTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      ws.close(1000);
    }
    if (this.es) {
      this.es.close();
      this.es = null;
    }
  }

  async open() {
    if (this.stopped) return;
    this.teardown();
    let useSSE = this.mode === "sse" || (this.mode === "auto" && this.wsFails >= WS_FAILS_BEFORE_SSE);
    if (useSSE && typeof EventSource === "undefined") useSSE = false;
    this.transport = useSSE ? "sse" : "ws";
    this.setState(this.attempt === 0 && !this.hello ? "connecting" : "reconnecting");
    let tok;
    try {
      tok = await this.token();
    } catch (e) {
      return this.failed(e);
    }
    if (this.stopped) return;
    const q = "token=" + encodeURIComponent(tok);
    if (useSSE) {
      const resume = this.lastID ? "&last_event_id=" + this.lastID : "";
      const es = new EventSource(this.base + "/sse?" + q + resume);
      this.es = es;
      const frame = (e) => { if (this.es === es) this.frame(JSON.parse(e.data)); };
      for (const t of ["hello", "msg", "unread", ...CHAT_FRAMES]) es.addEventListener(t, frame);
      es.addEventListener("error", (e) => {
        if (this.es !== es) return;
        if (e.data) return frame(e); // an error frame, not a broken stream
        this.lost(); // we reconnect on our own schedule, not EventSource's fixed retry
      });
      es.addEventListener("reconnect", () => { if (this.es === es) this.lost(); });
      return;
    }
    let ws;
    try {
      ws = new WebSocket(this.base.replace(/^http/, "ws") + "/ws?" + q);
    } catch (e) {
      this.wsFails++;
      return this.failed(e);
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => { opened = true; this.wsFails = 0; };
    ws.onmessage = (e) => {
      let f;
      try { f = JSON.parse(e.data); } catch { return; }
      this.frame(f);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!opened) this.wsFails++;
      this.retryHint = retryHint(e);
      this.lost();
    };
  }

  // lost handles a stream that ended or never opened: reconnect later.
  lost() {
    if (this.stopped) return;
    this.teardown();
    this.failed();
  }

  async failed() {
    if (this.stopped) return;
    const wasOpen = this.hello !== null && this.attempt === 0;
    this.attempt++;
    // After a few silent failures, ask over HTTP why: a 401 means the token
    // is no good and retrying will not help; no answer at all means the
    // server is down (a restart), not that WebSocket is blocked, so those
    // failures do not count towards falling back to SSE.
    if (this.attempt >= 2 && !wasOpen && !this.retryHint) { // a hint means the server answered
      try {
        await this.api("GET", "/api/v1/me/unread");
      } catch (e) {
        if (e.status === 401) {
          this.stopped = true;
          this.setState("unauthorized");
          this.emit("auth", e);
          return;
        }
        if (e.status === 0) this.wsFails = 0;
      }
    }
    if (this.stopped) return;
    // A server shedding load says when to come back (1013 "retry_ms=<n>"):
    // wait that, plus up to as much again, so refused clients spread out.
    const hint = this.retryHint || 0;
    this.retryHint = 0;
    const wait = hint > 0 ? hint + Math.random() * hint : backoff(this.attempt - 1);
    this.setState("reconnecting", { retryIn: wait });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), wait);
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    this.open();
  }

  frame(f) {
    this.lastFrame = Date.now();
    switch (f.type) {
      case "hello":
        this.hello = f;
        this.attempt = 0;
        this.heartbeat(f.heartbeat_s);
        this.setState("open");
        this.emit("hello", f);
        if (f.unread) this.emit("unread", f.unread);
        this.resend();
        return;
      case "msg": {
        if (this.transport === "sse" && laterID(f.id, this.lastID)) this.lastID = f.id;
        const key = f.id + ":" + (f.count || 1);
        if (this.remember(this.seen, key)) {
          this.emit("message", f);
        }
        if (this.autoAck) this.queueAck(f.id);
        return;
      }
      case "unread":
        this.emit("unread", f);
        return;
      case "pong":
        return;
      case "error":
        if (f.client_msg_id && this.pending.has(f.client_msg_id)) return this.sendFailed(f);
        this.emit("error", f);
        return;
      default:
        if (f.type === "chat.ack") {
          const p = this.pending.get(f.client_msg_id);
          if (p) {
            this.pending.delete(f.client_msg_id);
            p.resolve(f);
          }
        }
        if (f.type === "chat.msg" && !this.remember(this.seenChat, f.id)) return;
        if (f.type.startsWith("chat.") || f.type === "agent.status") this.emit("chat", f);
    }
  }

  remember(set, key) {
    if (set.has(key)) return false;
    set.add(key);
    if (set.size > SEEN_LIMIT) set.delete(set.values().next().value);
    return true;
  }

  // heartbeat pings over WebSocket (browsers hide the server's pings) and
  // drops a connection that has been silent for 2.5 heartbeats.
  heartbeat(seconds) {
    clearInterval(this.pingTimer);
    if (this.transport !== "ws" || !seconds) return;
    const every = seconds * 1000;
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastFrame > every * 2.5) return this.lost();
      this.sendFrame({ type: "ping" });
    }, every);
  }

  sendFrame(f) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.hello) {
      this.ws.send(JSON.stringify(f));
      return true;
    }
    return false;
  }

  get live() {
    return this.state === "open";
  }

  queueAck(id) {
    this.ackQueue.push(id);
    if (this.ackQueue.length === 1) queueMicrotask(() => this.flushAcks());
  }

  flushAcks() {
    const ids = this.ackQueue.splice(0, 1000);
    if (!ids.length) return;
    if (!this.sendFrame({ type: "ack", ids })) this.ack(ids).catch(() => {});
    if (this.ackQueue.length) this.flushAcks();
  }

  // ---- REST ----

  /** api calls Pushdesk's REST API with the token; it throws PushdeskError on a non-2xx answer. */
  async api(method, path, body) {
    const headers = { Authorization: "Bearer " + (await this.token()) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return call(this.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  }

  /** unread → {total, by_kind, unacked}. */
  unread() { return this.api("GET", "/api/v1/me/unread"); }

  /** messages lists the inbox, newest first: {messages, next}. */
  messages({ unread = false, limit = 50, before } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (unread) q.set("unread", "true");
    if (before) q.set("before", before);
    return this.api("GET", "/api/v1/me/messages?" + q);
  }

  /** read marks messages read → {updated}; the server then pushes a fresh "unread". */
  read(ids) { return this.api("POST", "/api/v1/me/read", { ids }); }

  readAll() { return this.api("POST", "/api/v1/me/read", { all: true }); }

  ack(ids) { return this.api("POST", "/api/v1/me/ack", { ids }); }

  /** sync asks for the unread replay again (WebSocket); over SSE it reconnects, which replays. */
  sync() {
    if (!this.sendFrame({ type: "sync" })) this.reconnectNow();
  }

  // ---- support chat ----

  conversations() { return this.api("GET", "/api/v1/chat/conversations"); }

  /** chatHistory → {messages (newest first), next}. */
  chatHistory(conversationId, { before, limit = 50 } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set("before", before);
    return this.api("GET", `/api/v1/chat/conversations/${encodeURIComponent(conversationId)}/messages?` + q);
  }

  agents() { return this.api("GET", "/api/v1/chat/agents"); }

  /**
   * chatSend sends a chat line and resolves with its chat.ack once it is
   * stored. It survives reconnects: the line goes again with the same
   * client_msg_id, which the server stores only once. Over SSE it posts it.
   */
  chatSend(text, { conversationId, clientMsgID } = {}) {
    const req = { text, client_msg_id: clientMsgID || newClientMsgID() };
    if (conversationId) req.conversation_id = conversationId;
    return new Promise((resolve, reject) => {
      const p = { req, resolve, reject, tries: 0 };
      this.pending.set(req.client_msg_id, p);
      this.trySend(p);
    });
  }

  trySend(p) {
    if (!this.pending.has(p.req.client_msg_id)) return;
    if (this.transport === "ws") {
      this.sendFrame({ type: "chat.send", ...p.req }); // if not open, resend() sends it after hello
      return;
    }
    if (!this.live) return;
    this.api("POST", "/api/v1/chat/messages", p.req).then(
      (ack) => { this.pending.delete(p.req.client_msg_id); p.resolve(ack); },
      (e) => this.sendFailed({ code: e.status, msg: e.message, client_msg_id: p.req.client_msg_id }),
    );
  }

  // sendFailed retries a line refused for a moment (416 another open racing,
  // 503, network) and rejects it for good otherwise.
  sendFailed(f) {
    const p = this.pending.get(f.client_msg_id);
    if (!p) return;
    if ((f.code === 416 || f.code === 503 || f.code === 0) && p.tries++ < 8) {
      setTimeout(() => this.trySend(p), 200 + backoff(p.tries, 200, 4000));
      return;
    }
    this.pending.delete(f.client_msg_id);
    p.reject(new PushdeskError(f.code, "chat_" + f.code, f.msg));
  }

  resend() {
    for (const p of this.pending.values()) this.trySend(p);
  }

  /** chatClose closes a conversation → {closed:true}. */
  chatClose(conversationId) {
    return this.api("POST", `/api/v1/chat/conversations/${encodeURIComponent(conversationId)}/close`);
  }

  /** chatTransfer hands a conversation to another agent (agents, over WebSocket). */
  chatTransfer(conversationId, toAgent) {
    return this.wsOnly({ type: "chat.transfer", conversation_id: conversationId, to_agent: String(toAgent) });
  }

  /** chatRead clears a conversation's unread badge (agents). */
  chatRead(conversationId) {
    return this.wsOnly({ type: "chat.read", conversation_id: conversationId });
  }

  /** setStatus sets an agent "online" or "away"; the server answers with an agent.status frame. */
  setStatus(status) {
    return this.wsOnly({ type: "agent.status", status });
  }

  wsOnly(f) {
    if (!this.sendFrame(f)) throw new PushdeskError(0, "not_connected", "not connected over WebSocket; try again when connected");
  }

  /** login exchanges a console email and password for an agent token → {token, agent}. */
  static async login(email, password, base = defaultBase) {
    return call(base.replace(/\/$/, "") + "/console/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password }),
    });
  }
}
