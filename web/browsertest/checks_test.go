package browsertest

import (
	"context"
	"fmt"
	"strings"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Checks a test runs on a page besides its own story: controls a screen
// reader can name, and stand-ins for what headless Chromium cannot show
// (a hidden tab, desktop notifications, sound).

// controlRoles are the accessibility roles a user operates; each needs a name.
var controlRoles = map[string]bool{
	"button": true, "link": true, "textbox": true, "searchbox": true, "combobox": true,
	"checkbox": true, "radio": true, "listbox": true, "menuitem": true, "tab": true, "switch": true,
}

// unlabelled lists the controls in the page's accessibility tree (as
// Chromium computes it for screen readers; hidden ones are ignored) that
// have no accessible name.
func (p *page) unlabelled() []string {
	p.tb.Helper()
	var bad []string
	p.do("accessibility tree", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdp.Call(ctx, t, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
		if err != nil {
			return err
		}
		for _, n := range res.Nodes {
			if n.Ignored || n.Role == nil {
				continue
			}
			role := strings.Trim(string(n.Role.Value), `"`)
			if !controlRoles[role] {
				continue
			}
			if n.Name == nil || strings.TrimSpace(strings.Trim(string(n.Name.Value), `"`)) == "" {
				bad = append(bad, fmt.Sprintf("%s (backend node %d)", role, n.BackendDOMNodeID))
			}
		}
		return nil
	}))
	return bad
}

// fakeAlerts makes the page believe its tab can be hidden (window.__hidden,
// set with setHidden) and that desktop notifications are allowed; it
// records the notifications the page makes (window.__notes) and the tones
// it starts (window.__tones). Call it before open.
func (p *page) fakeAlerts() {
	p.tb.Helper()
	p.do("fake alerts", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{
			Source: `window.__hidden = false; window.__notes = []; window.__tones = 0;
				Object.defineProperty(Document.prototype, "hidden", { configurable: true, get() { return window.__hidden; } });
				Object.defineProperty(Document.prototype, "visibilityState", { configurable: true, get() { return window.__hidden ? "hidden" : "visible"; } });
				window.Notification = class {
					constructor(title, o) { window.__notes.push({ title, body: (o && o.body) || "" }); }
					close() {}
					static get permission() { return "granted"; }
					static requestPermission() { return Promise.resolve("granted"); }
				};
				const start = OscillatorNode.prototype.start;
				OscillatorNode.prototype.start = function (...a) { window.__tones++; return start.apply(this, a); };`,
		})
		return err
	}))
}

// setHidden hides or shows the tab as fakeAlerts pretends it.
func (p *page) setHidden(hidden bool) {
	p.tb.Helper()
	eval[chromedp.Void](p, fmt.Sprintf(`window.__hidden = %v; document.dispatchEvent(new Event("visibilitychange"))`, hidden))
}
