// util.js — small DOM and formatting helpers shared by the demo's modules.

/** el builds an element: el("li", {class: "x", "data-id": "1"}, child, "text"). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c !== undefined && c !== null && c !== false) e.append(c);
  }
  return e;
}

/** bodyText is the human line of a notification body: its text, else its title, else its JSON. */
export function bodyText(body) {
  if (body && typeof body === "object") {
    if (typeof body.text === "string" && body.text !== "") return body.text;
    if (typeof body.title === "string" && body.title !== "") return body.title;
  }
  return JSON.stringify(body);
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/** when is a short time for a unix-ms stamp: "just now", "5 min ago", "14:05", "Mar 3". */
export function when(ts, now = Date.now()) {
  if (!ts) return "";
  const ago = now - ts;
  if (ago < 45e3) return "just now";
  if (ago < 3600e3) return Math.max(1, Math.round(ago / 60e3)) + " min ago";
  const d = new Date(ts);
  return new Date(now).toDateString() === d.toDateString() ? clock.format(d) : day.format(d);
}

/** timeOf is the clock time of a unix-ms stamp, for chat lines. */
export function timeOf(ts) {
  return ts ? clock.format(new Date(ts)) : "";
}

/** iso is the machine-readable datetime attribute of a unix-ms stamp. */
export function iso(ts) {
  return ts ? new Date(ts).toISOString() : "";
}

/** errorText turns a PushdeskError (or anything thrown) into a sentence for the page. */
export function errorText(e, what) {
  if (!e) return what;
  if (e.status === 0) return what + ": the server cannot be reached. Check your connection and try again.";
  if (e.status === 429) return what + ": too many at once. Wait a few seconds and try again.";
  if (e.status === 401) return what + ": you are signed out. Sign in again.";
  return what + (e.message ? ": " + e.message : ".");
}
