// util.js — small DOM and formatting helpers for the console.

import { laterID } from "/pushdesk.js";

/** $ finds an element by id. */
export const $ = (id) => document.getElementById(id);

/**
 * el builds an element: el("span", {class: "who", text: "User 42"}, child…).
 * Attributes only — never HTML — so text from the wire cannot become markup.
 */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

/** setText changes an element's text only when it differs (no needless mutations for screen readers). */
export function setText(e, text) {
  const t = String(text);
  if (e.textContent !== t) e.textContent = t;
}

/** setAttr sets or (for null/false) removes an attribute, only when it changes. */
export function setAttr(e, name, value) {
  if (value === null || value === undefined || value === false) {
    if (e.hasAttribute(name)) e.removeAttribute(name);
    return;
  }
  const v = value === true ? "" : String(value);
  if (e.getAttribute(name) !== v) e.setAttribute(name, v);
}

/** duration renders milliseconds as "40s", "2m", "1h 5m", "3d". */
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m";
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h}h ${m % 60}m` : h + "h";
  return Math.floor(h / 24) + "d";
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** clock is "14:02" for today, "Mar 3" for an older time. */
export function clock(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}

/** lineTime is a line's time: "14:02", or "Mar 3, 14:02" before today. */
export function lineTime(ts) {
  const d = new Date(ts);
  return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : dayFmt.format(d) + ", " + timeFmt.format(d);
}

/** fullTime is the long form for a title/tooltip. */
export const fullTime = (ts) => (ts ? fullFmt.format(new Date(ts)) : "");

/** compareLines orders chat lines by time, then id (ids sort by time too). */
export function compareLines(a, b) {
  if (a.ts !== b.ts) return a.ts - b.ts;
  if (a.id === b.id) return 0;
  return laterID(a.id, b.id) ? 1 : -1;
}

/** userLabel names a user for agents. */
export const userLabel = (uid) => "User " + uid;

/** errorText turns a PushdeskError (or an error frame) into a sentence for the agent. */
export function errorText(e, what = "That did not work") {
  const code = e.status ?? e.code;
  const why = e.message || e.msg || "";
  if (e.code === "not_connected") return `${what}: this needs the WebSocket connection, which is not up (the console may be on its SSE fallback). Try again in a moment.`;
  switch (code) {
    case 0: return `${what}: not connected. It goes again once the connection is back, or try again.`;
    case 400: return `${what}: ${why || "the server refused it"}.`;
    case 403: return `${what}: this conversation is not yours any more.`;
    case 404: return `${what}: the conversation no longer exists.`;
    case 409: return `${what}: ${why || "the conversation is closed"}.`;
    case 429: return `${what}: too many lines in a short time. Wait a few seconds and send again.`;
    case 503: return `${what}: the server is busy. Try again in a moment.`;
    default: return `${what}: ${why || "error " + code}.`;
  }
}
