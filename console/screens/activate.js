// @ts-check
// The page the activation email links to.

import * as API from "../api.js";
import { actionButton, h, outcome } from "../dom.js";
import { t } from "../i18n.js";
import { api, show } from "../shell.js";

/**
 * The link's token, taken out of the address bar and the history as soon as the page opens
 * (kept here, so that drawing the page again, in the other language, still has it).
 * @type {string | null}
 */
let token = null;

/** What confirming answered, so that the page drawn again shows it. @type {{ organization_id: string, status: string } | null} */
let confirmed = null;

/** The result, and the way on: the console's own address, not /activate#/…. */
function done() {
  if (!confirmed) return "";
  return h(
    "div",
    null,
    h("p", null, t(confirmed.status === "active" ? "activate.active" : "activate.next")),
    h("p", null, h("a", { href: `/#/o/${confirmed.organization_id}/me`, class: "button" }, t("activate.continue"))),
  );
}

/** @param {string | null} fromLink the token in the address, when the page was opened from the email */
export function activate(fromLink) {
  if (fromLink) {
    token = fromLink;
    confirmed = null;
    history.replaceState(null, "", "/activate");
  }
  if (confirmed) {
    show(t("activate.title"), h("p", { class: "outcome ok", role: "status" }, t("activate.confirmed")), done());
    return;
  }
  if (!token) {
    show(t("activate.title"), h("p", null, t("activate.no_link")));
    return;
  }
  const link = token;
  const report = outcome();
  const next = h("div", { "aria-live": "polite" });
  const button = actionButton(
    t("activate.confirm"),
    report,
    async () => {
      confirmed = await API.confirmEmail(api, { body: { token: link } });
      button.hidden = true;
      next.replaceChildren(done());
      return t("activate.confirmed");
    },
    { class: "primary" },
  );
  show(t("activate.title"), h("p", null, t("activate.intro")), button, report.element, next);
}
