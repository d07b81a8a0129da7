// main.js — the demo "main site": signs in with a user token, then runs
// the bell and the chat widget over one Pushdesk connection.
//
// The token comes from ?token= (taken out of the address bar at once) or
// from the form. It lives in sessionStorage, or in localStorage when the
// user ticks "remember me"; never in a cookie.

import { Pushdesk } from "/pushdesk.js";
import { Bell } from "./bell.js";
import { Chat } from "./chat.js";

const KEY = "pushdesk-demo-token";
const REFUSED = "That token was refused: it may have expired or be for another server. Paste a new one.";
const $ = (id) => document.getElementById(id);

const form = $("token-form");
const input = $("token-input");
const remember = $("token-remember");
const formError = $("token-error");
const site = $("site");
const signin = $("signin");
const banner = $("conn-banner");
const userID = $("user-id");
const connText = $("conn-text");

const bell = new Bell({ onChat: () => chat.show() });
const chat = new Chat({
  onShow: () => bell.readKind("chat"),
  onInboxReply: (m) => bell.markRead([m.id]),
});

let pd = null;

function storedToken() {
  try {
    return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

function storeToken(token, keep) {
  try {
    forgetToken();
    (keep ? localStorage : sessionStorage).setItem(KEY, token);
  } catch {
    // Storage refused (private mode): the token lasts as long as the page.
  }
}

function forgetToken() {
  try {
    sessionStorage.removeItem(KEY);
    localStorage.removeItem(KEY);
  } catch {
    // nothing stored
  }
}

// tokenFromURL takes ?token= and removes it from the address bar, so it is
// neither bookmarked nor shown over someone's shoulder.
function tokenFromURL() {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token === null) return "";
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  return token.trim();
}

const STATE_TEXT = {
  connecting: "Connecting…",
  open: "Live",
  reconnecting: "Reconnecting…",
  unauthorized: "Signed out",
  closed: "Offline",
};

function showState({ state, transport }) {
  document.body.dataset.state = state;
  if (transport) document.body.dataset.transport = transport;
  banner.hidden = state !== "reconnecting";
  connText.textContent = STATE_TEXT[state] || state;
  connText.title = state === "open" && transport ? `Connected over ${transport === "ws" ? "WebSocket" : "server-sent events"}` : "";
}

function start(token) {
  stop();
  pd = new Pushdesk({ token });
  const me = pd;
  bell.bind(pd);
  chat.bind(pd);
  pd.on("state", (s) => { if (me === pd) showState(s); });
  pd.on("hello", (h) => {
    if (me !== pd) return;
    userID.textContent = h.uid;
    for (const e of document.querySelectorAll(".uid")) e.textContent = h.uid;
  });
  pd.on("auth", () => {
    if (me !== pd) return;
    signOut(REFUSED);
  });
  signin.hidden = true;
  site.hidden = false;
  userID.textContent = "…";
  pd.connect();
  // pd finds a refused token out after two failed connects; a REST call
  // tells at once, so a mistyped token goes back to the form quickly.
  pd.unread().catch((e) => {
    if (me === pd && e.status === 401) signOut(REFUSED);
  });
}

function stop() {
  if (!pd) return;
  const old = pd;
  pd = null;
  bell.unbind();
  chat.unbind();
  old.close();
}

function signOut(message) {
  stop();
  forgetToken();
  document.body.dataset.state = message ? "unauthorized" : "closed";
  banner.hidden = true;
  site.hidden = true;
  signin.hidden = false;
  userID.textContent = "";
  input.value = "";
  formError.textContent = message || "";
  formError.hidden = !message;
  input.focus();
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const token = input.value.trim();
  if (!token) {
    formError.textContent = "Paste a user token first.";
    formError.hidden = false;
    input.focus();
    return;
  }
  formError.textContent = "";
  formError.hidden = true;
  storeToken(token, remember.checked);
  input.value = "";
  start(token);
});

// A token is one line: Enter in its box connects.
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    form.requestSubmit();
  }
});

$("signout").addEventListener("click", () => signOut(""));

for (const e of document.querySelectorAll(".origin")) e.textContent = location.origin;

const fromURL = tokenFromURL();
if (fromURL) storeToken(fromURL, false);
const token = fromURL || storedToken();
if (token) {
  start(token);
} else {
  document.body.dataset.state = "closed";
  signin.hidden = false;
  input.focus();
}
