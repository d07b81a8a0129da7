// lines.js — the chat's line elements and their order in the list.

import { el, timeOf, iso } from "./util.js";

/**
 * lineElement builds one chat line: .line[data-id][data-from] with a .text
 * child holding exactly the text. A pending line has no data-id yet.
 */
export function lineElement({ id, from, text, ts, agent, pending }) {
  const who = from === "user" ? "You" : agent || "Support";
  return el("li", { class: pending ? "line pending" : "line", "data-id": id, "data-from": from },
    el("span", { class: "sr-only" }, who + ": "),
    el("div", { class: "text" }, text),
    el("div", { class: "meta" },
      from === "agent" ? el("span", { class: "who" }, who) : null,
      el("time", { datetime: pending ? undefined : iso(ts) }, pending ? "sending…" : timeOf(ts))),
  );
}

/**
 * placeLine puts a line with an id after the last line whose id sorts
 * before it (ids sort by time). Lines still pending stay at the bottom.
 */
export function placeLine(list, li, later) {
  const id = li.dataset.id;
  for (let c = list.lastElementChild; c; c = c.previousElementSibling) {
    if (c === li || !c.dataset.id) continue;
    if (later(id, c.dataset.id)) {
      if (c.nextElementSibling !== li) c.after(li);
      return;
    }
  }
  if (list.firstElementChild !== li) list.prepend(li);
}

/** nearBottom reports whether a scroller shows its end (so a new line may scroll it). */
export function nearBottom(scroller) {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
}
