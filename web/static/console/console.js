// console.js — the agent console's entry: signs in, connects, and wires
// the stream's frames to the list, the chat pane and the header.

import { Pushdesk } from "/pushdesk.js";
import { $, el, setText, setAttr, userLabel, errorText } from "./util.js";
import { LoginForm, saved, forget } from "./session.js";
import { ConvList } from "./list.js";
import { ChatPane } from "./chat.js";
import { Actions } from "./actions.js";
import { setupAlerts, alert } from "./alerts.js";

const REFRESH_EVERY = 5000; // ms between REST listings (waiting conversations come no other way)

const login = new LoginForm(start);
setupAlerts();
{
  const s = saved();
  if (s && s.token) start(s);
  else login.show(s && s.expired ? "Your session expired. Please sign in again." : "");
}

// reset empties what a session showed, for the next one.
function reset() {
  for (const id of ["conv-active", "conv-closed", "chat-lines"]) $(id).replaceChildren();
  $("chat-pane").hidden = true;
  $("no-selection").hidden = false;
  $("closed-group").hidden = true;
  $("chat-input").value = "";
  $("transfer-select").replaceChildren(el("option", { value: "", text: "Transfer to…" }));
  setText($("agent-load"), "– / –");
  setText($("toast"), "");
  $("status-toggle").dataset.status = "online";
  setText($("status-label"), "Online");
  $("away-note").hidden = true;
  $("conn-banner").hidden = true;
  $("app").dataset.view = "list";
  $("app").hidden = true;
  document.body.dataset.state = "closed";
  document.body.dataset.transport = "";
  document.title = "Pushdesk Console";
}

// start runs one signed-in session until signOut; everything it sets up
// (listeners, timers, the connection) ends with it.
function start(session) {
  const me = { ...session.agent, id: String(session.agent.id) };
  const pd = new Pushdesk({ token: session.token });
  const ac = new AbortController();
  const opts = { signal: ac.signal };
  const list = new ConvList(me, (cid) => select(cid), ac.signal);
  const pane = new ChatPane(pd, me, list, ac.signal);
  const actions = new Actions(pd, me, list, pane, ac.signal);
  let toastTimer = 0;
  const toast = (text) => {
    setText($("toast"), text);
    clearTimeout(toastTimer);
    if (text) toastTimer = setTimeout(() => setText($("toast"), ""), 8000);
  };
  let ticker = 0;
  let soonTimer = 0;

  // signOut drops the token and goes back to the login form, which shows
  // text (as an error when error is set). The page stays: no reload.
  function signOut(text, error = false) {
    if (ac.signal.aborted) return;
    ac.abort();
    clearInterval(ticker);
    clearTimeout(soonTimer);
    clearTimeout(toastTimer);
    forget();
    pd.close();
    pane.hide();
    reset();
    login.show(error ? text : "");
    setText($("login-notice"), error ? "" : text);
  }

  login.hide();
  $("app").hidden = false;
  setText($("agent-name"), me.name);
  setAttr($("agent-name"), "title", me.email || "Agent " + me.id);

  // ---- connection ----

  pd.on("state", ({ state, transport }) => {
    document.body.dataset.state = state;
    document.body.dataset.transport = transport || "";
    $("conn-banner").hidden = state !== "reconnecting";
    const label = { connecting: "Connecting…", open: transport === "sse" ? "Live (SSE)" : "Live", reconnecting: "Reconnecting…" };
    setText($("conn-state"), label[state] || "Offline");
    setAttr($("conn-state"), "data-state", state);
    setAttr($("conn-state"), "title", transport === "sse" && state === "open"
      ? "Connected over Server-Sent Events: status changes and transfers need WebSocket" : "");
  });
  pd.on("auth", () => signOut("Your session has ended or the token is no longer accepted. Please sign in again.", true));
  pd.on("hello", () => {
    refreshList();
    pane.reconnected();
    actions.refreshAgents();
  });
  pd.on("error", (f) => {
    if (actions.errorFrame(f)) return;
    if (f.code === 403 && !f.client_msg_id) return; // a chat.read that raced a hand-over
    if (f.code === 400 && /status/.test(f.msg || "")) toast("Status not changed: " + f.msg);
  });
  pd.on("chat", (f) => {
    switch (f.type) {
      case "agent.status": return showStatus(f);
      case "chat.assigned": {
        const isNew = list.assigned(f);
        if (isNew && list.loaded) {
          alert("New conversation", `${userLabel(f.user?.id || "")} is waiting for your answer.`, "pd-" + f.conversation_id,
            () => select(f.conversation_id));
        }
        if (f.conversation_id === pane.cid) pane.render();
        return soon();
      }
      case "chat.msg": return line(f);
      case "chat.closed":
        list.closed(f.conversation_id);
        if (f.conversation_id === pane.cid) pane.render();
        return soon();
      case "chat.transferred":
        actions.transferred(f);
        return soon();
      case "chat.presence":
        list.presence(f.conversation_id, !!f.user?.online);
        if (f.conversation_id === pane.cid) pane.render();
    }
  });
  pd.connect();

  // ---- frames ----

  function line(f) {
    const cid = f.conversation_id;
    if (!list.get(cid)) {
      const c = list.ensure(cid); // a line before its conversation's listing: ours (agents get only those)
      c.mine = true;
      c.touched = Date.now();
      soon();
    }
    const fresh = pane.add(cid, [f]);
    if (!fresh.length || f.from !== "user" || f.replay) return;
    if (cid === pane.cid && !document.hidden) markRead(cid);
    else list.bumpUnread(cid);
    const c = list.get(cid);
    alert(userLabel(c?.userId || ""), f.text, "pd-" + cid, () => select(cid));
  }

  const reading = new Set();
  function markRead(cid) {
    list.clearUnread(cid);
    const c = list.get(cid);
    if (!c || !c.mine || c.status !== "open" || c.gone || reading.has(cid)) return;
    reading.add(cid);
    queueMicrotask(() => {
      reading.delete(cid);
      try { pd.chatRead(cid); } catch { /* not over WebSocket now: the badge is cleared here, the server's at the next read */ }
    });
  }

  // ---- the list over REST ----

  let listing = null;
  let again = false;
  async function refreshList() {
    if (listing) {
      again = true;
      return listing;
    }
    const startedAt = Date.now();
    listing = pd.conversations().then(
      (res) => {
        list.merge(res.conversations || [], startedAt);
        const c = pane.conv();
        if (c) {
          pane.render();
          if (c.id === pane.cid && !document.hidden) markRead(c.id);
        }
      },
      (e) => {
        if (e.status === 401) signOut("Your session has ended. Please sign in again.", true);
      },
    ).finally(() => {
      listing = null;
      if (again) {
        again = false;
        refreshList();
      }
    });
    return listing;
  }

  function soon() {
    clearTimeout(soonTimer);
    soonTimer = setTimeout(refreshList, 300);
  }

  ticker = setInterval(() => {
    if (pd.state === "open") refreshList();
    list.tick();
    if (pane.cid) pane.render();
    if (pane.conv()?.status === "waiting") pane.loadLatest(pane.cid); // agents get no frames for waiting ones
    if (pane.writable()) actions.refreshAgents();
  }, REFRESH_EVERY);

  // ---- selecting ----

  function select(cid) {
    if (!list.get(cid)) return;
    list.select(cid);
    pane.show(cid);
    $("app").dataset.view = "chat";
    if (!document.hidden) markRead(cid);
    if (pane.writable()) actions.refreshAgents();
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && pane.cid) markRead(pane.cid);
  }, opts);

  $("chat-back").addEventListener("click", () => {
    $("app").dataset.view = "list";
    list.focusItem(pane.cid);
  }, opts);

  // ---- header ----

  let status = "online";
  function showStatus(f) {
    status = f.status;
    const b = $("status-toggle");
    b.dataset.status = f.status;
    b.removeAttribute("aria-busy");
    setText($("status-label"), f.status === "online" ? "Online" : "Away");
    setAttr(b, "aria-label", f.status === "online" ? "Status: online. Switch to away" : "Status: away. Switch to online");
    setAttr(b, "title", f.status === "online" ? "You get new conversations. Click to go away." : "You get no new conversations. Click to come back online.");
    setText($("agent-load"), `${f.load} / ${f.capacity}`);
    setAttr($("load-box"), "data-full", f.load >= f.capacity ? "true" : null);
    $("away-note").hidden = f.status !== "away";
  }

  $("status-toggle").addEventListener("click", () => {
    const next = status === "online" ? "away" : "online";
    try {
      pd.setStatus(next);
      $("status-toggle").setAttribute("aria-busy", "true");
      setTimeout(() => $("status-toggle").removeAttribute("aria-busy"), 5000);
      toast("");
    } catch (e) {
      toast(errorText(e, "Status not changed"));
    }
  }, opts);

  $("logout").addEventListener("click", () => signOut("You have signed out."), opts);

  // ---- keyboard ----

  document.addEventListener("keydown", (e) => {
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      const next = list.neighbour(e.key === "ArrowDown" ? 1 : -1);
      e.preventDefault();
      if (!next) return;
      const inComposer = document.activeElement === pane.input;
      select(next);
      if (inComposer && !pane.input.disabled) pane.input.focus();
      else list.focusItem(next);
    } else if (e.code === "KeyC" && !e.shiftKey) {
      e.preventDefault();
      actions.close();
    }
  }, opts);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && $("app").dataset.view === "chat" && matchMedia("(max-width: 760px)").matches) {
      $("chat-back").click();
    }
  }, opts);
}
