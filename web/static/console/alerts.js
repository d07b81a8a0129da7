// alerts.js — a short chime (WebAudio, no sound file) and a desktop
// notification for news while the tab is hidden. Permission is asked
// only from the "Enable notifications" button, never on load.

import { $ } from "./util.js";

let audio = null;
let lastChime = 0;

// unlockAudio makes the AudioContext inside a user gesture, so it may
// play later while the tab is in the background.
function unlockAudio() {
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) return;
  if (!audio) {
    try { audio = new AC(); } catch { return; }
  }
  if (audio.state === "suspended") audio.resume().catch(() => {});
}

/** chime plays two soft notes (at most one chime every 1.5 s). */
export function chime() {
  const now = Date.now();
  if (!audio || now - lastChime < 1500) return;
  lastChime = now;
  const t = audio.currentTime + 0.01;
  const gain = audio.createGain();
  gain.gain.setValueAtTime(0.0001, t);
  gain.gain.exponentialRampToValueAtTime(0.12, t + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.45);
  gain.connect(audio.destination);
  const osc = audio.createOscillator();
  osc.type = "sine";
  osc.frequency.setValueAtTime(880, t);
  osc.frequency.setValueAtTime(660, t + 0.14);
  osc.connect(gain);
  osc.start(t);
  osc.stop(t + 0.5);
}

const supported = () => "Notification" in window;

function renderButton() {
  const b = $("notify-enable");
  if (!supported()) {
    b.textContent = "Notifications unavailable";
    b.disabled = true;
    b.title = "This browser has no desktop notifications";
    return;
  }
  const p = Notification.permission;
  b.dataset.permission = p;
  b.setAttribute("aria-pressed", String(p === "granted"));
  if (p === "granted") {
    b.textContent = "Notifications on";
    b.title = "Desktop notifications arrive while this tab is in the background";
  } else if (p === "denied") {
    b.textContent = "Notifications blocked";
    b.title = "Allow notifications for this site in the browser's settings";
  } else {
    b.textContent = "Enable notifications";
    b.title = "Get a desktop notification and a sound for new chats while this tab is hidden";
  }
}

/** setupAlerts wires the button and the audio unlock; call once. */
export function setupAlerts() {
  renderButton();
  addEventListener("pointerdown", unlockAudio, { capture: true });
  addEventListener("keydown", unlockAudio, { capture: true });
  $("notify-enable").addEventListener("click", async () => {
    unlockAudio();
    if (!supported()) return;
    if (Notification.permission === "default") {
      try { await Notification.requestPermission(); } catch { /* old callback form: ignore */ }
    }
    renderButton();
    if (Notification.permission === "granted") chime();
  });
}

/**
 * alert tells a hidden tab's agent about news: the chime, and a desktop
 * notification when allowed; clicking it brings the tab back and calls
 * onClick.
 */
export function alert(title, body, tag, onClick) {
  if (!document.hidden) return;
  chime();
  if (!supported() || Notification.permission !== "granted") return;
  try {
    const n = new Notification(title, { body: body.slice(0, 180), tag, renotify: true, silent: true });
    n.onclick = () => {
      window.focus();
      n.close();
      onClick?.();
    };
  } catch {
    // Some browsers allow notifications only from a service worker.
  }
}
