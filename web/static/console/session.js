// session.js — signing in and out: the login form, and where the agent's
// token is kept (localStorage only with "remember me", else
// sessionStorage; never a cookie).

import { Pushdesk } from "/pushdesk.js";
import { $ } from "./util.js";

const KEY = "pushdesk.console.session";

/** claims decodes a JWT's payload without checking it (the server does that); null when it is not one. */
export function claims(token) {
  const parts = String(token).split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(b64), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    const c = JSON.parse(json);
    return c && typeof c === "object" ? c : null;
  } catch {
    return null;
  }
}

const expired = (c) => typeof c.exp === "number" && c.exp * 1000 <= Date.now();

/** saved is the stored session {token, agent:{id,name,email}}, or null (dropping one that has expired). */
export function saved() {
  for (const store of [sessionStorage, localStorage]) {
    let s;
    try { s = JSON.parse(store.getItem(KEY) || "null"); } catch { s = null; }
    if (!s || !s.token || !s.agent) continue;
    const c = claims(s.token);
    if (!c || expired(c)) {
      store.removeItem(KEY);
      return { expired: true };
    }
    return s;
  }
  return null;
}

function save(s, remember) {
  forget();
  (remember ? localStorage : sessionStorage).setItem(KEY, JSON.stringify(s));
}

/** forget drops the stored token from both stores. */
export function forget() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

function loginError(e) {
  if (e.status === 401) return "Wrong email or password.";
  if (e.status === 429) {
    return "Too many failed attempts." + (e.retryAfter ? ` Try again in ${Math.ceil(e.retryAfter / 60)} min.` : " Wait a while and try again.");
  }
  if (e.status === 0) return "Cannot reach Pushdesk. Check your connection and try again.";
  if (e.status === 403) return "This agent login is disabled.";
  return "Sign-in failed: " + (e.message || "error " + e.status) + ".";
}

/**
 * LoginForm runs #login-form. onSignedIn(session) is called with
 * {token, agent} once a password login or a pasted token checked out.
 */
export class LoginForm {
  constructor(onSignedIn) {
    this.onSignedIn = onSignedIn;
    this.form = $("login-form");
    this.err = $("login-error");
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.withPassword();
    });
    $("login-token-submit").addEventListener("click", () => this.withToken());
    $("login-token").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        this.withToken();
      }
    });
  }

  show(message = "") {
    this.busy(false);
    $("login-password").value = "";
    $("login-token").value = "";
    this.error(message);
    $("login").hidden = false;
    this.form.hidden = false;
    $("login-email").focus();
  }

  hide() {
    this.form.hidden = true;
    $("login").hidden = true;
    this.error("");
  }

  error(text) {
    if (text) $("login-notice").textContent = "";
    this.err.textContent = text;
    this.err.hidden = !text;
  }

  busy(on) {
    for (const id of ["login-submit", "login-token-submit"]) $(id).disabled = on;
    this.form.setAttribute("aria-busy", String(on));
  }

  async withPassword() {
    const email = $("login-email").value.trim();
    const password = $("login-password").value;
    if (!email || !password) {
      this.error("Enter your email and password, or paste an agent token below.");
      (email ? $("login-password") : $("login-email")).focus();
      return;
    }
    this.error("");
    this.busy(true);
    try {
      const res = await Pushdesk.login(email, password);
      const c = claims(res.token) || {};
      const agent = res.agent || { id: String(c.sub), name: c.name || email, email };
      this.done({ token: res.token, agent: { ...agent, id: String(agent.id) } });
    } catch (e) {
      this.busy(false);
      this.error(loginError(e));
      $("login-password").select();
    }
  }

  async withToken() {
    const token = $("login-token").value.trim().replace(/^Bearer\s+/i, "");
    const c = token && claims(token);
    if (!c) {
      this.error(token ? "That is not a token: paste the whole JWT (three parts separated by dots)." : "Paste an agent token first.");
      $("login-token").focus();
      return;
    }
    if (c.role !== "agent") {
      this.error("This is a user token. The console needs an agent token (role \"agent\").");
      return;
    }
    if (expired(c)) {
      this.error("This token has expired. Ask for a new one or sign in with your email.");
      return;
    }
    this.error("");
    this.busy(true);
    try {
      await new Pushdesk({ token }).agents(); // the server's word on the token
    } catch (e) {
      this.busy(false);
      this.error(e.status === 401 ? "The server does not accept this token." : loginError(e));
      return;
    }
    this.done({ token, agent: { id: String(c.sub), name: c.name || "Agent " + c.sub } });
  }

  done(session) {
    save(session, $("login-remember").checked);
    this.busy(false);
    this.onSignedIn(session);
  }
}
