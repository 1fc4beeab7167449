// @ts-check
// The page the activation email links to.

import * as API from "../api.js";
import { actionButton, h, outcome } from "../dom.js";
import { t } from "../i18n.js";
import { api, show } from "../shell.js";

/** @param {string} token */
export function activate(token) {
  const report = outcome();
  const next = h("div", { "aria-live": "polite" });
  const button = actionButton(
    t("activate.confirm"),
    report,
    async () => {
      const state = await API.confirmEmail(api, { body: { token } });
      button.hidden = true;
      // The used link leaves the address bar and the history; the way on is the console's
      // own address, not /activate#/….
      history.replaceState(null, "", "/");
      next.replaceChildren(
        h("p", null, t(state.status === "active" ? "activate.active" : "activate.next")),
        h("p", null, h("a", { href: `/#/o/${state.organization_id}/me`, class: "button" }, t("activate.continue"))),
      );
      return t("activate.confirmed");
    },
    { class: "primary" },
  );
  show(t("activate.title"), h("p", null, t("activate.intro")), button, report.element, next);
}
