// @ts-check
// The organization's settings (manager).

import * as API from "../api.js";
import { actionForm, h, outcome } from "../dom.js";
import { t } from "../i18n.js";
import { api, failed, orgNav, show } from "../shell.js";

/** @param {string} org */
export async function settings(org) {
  let organization;
  try {
    organization = await API.readOrganization(api, { path: { org } });
  } catch (error) {
    return failed(error);
  }
  const report = outcome();
  const box = /** @type {HTMLInputElement} */ (
    h("input", { type: "checkbox", name: "employee_self_subscription", checked: organization.settings.employee_self_subscription })
  );
  let version = organization.version;
  const form = actionForm(
    report,
    async () => {
      const saved = await API.changeSettings(api, { path: { org }, body: { version, employee_self_subscription: box.checked } });
      version = saved.version;
      return t("settings.saved");
    },
    null,
    h("label", { class: "check" }, box, ` ${t("settings.self_subscription")}`),
    h("p", { class: "hint" }, t("settings.self_subscription_hint")),
    h("button", { type: "submit" }, t("settings.save")),
  );
  show(t("settings.title"), orgNav(org, "settings"), form, report.element);
}
