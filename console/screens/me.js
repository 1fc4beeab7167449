// @ts-check
// The signed-in person's own account: activation code, contact codes, their trail.

import * as API from "../api.js";
import { actionButton, actionForm, field, h, isolate, outcome } from "../dom.js";
import { t } from "../i18n.js";
import * as session from "../session.js";
import { api, failed, go, refresh, show } from "../shell.js";
import { auditSection } from "./audit.js";
import { profileFacts } from "./user.js";

/** @param {string} org */
export async function me(org) {
  const signedIn = session.current();
  if (!signedIn) return go("#/sign-in");
  let profile;
  try {
    profile = await API.readProfile(api, { path: { org, id: signedIn.subject } });
  } catch (error) {
    return failed(error);
  }
  const report = outcome();
  const codeInput = () =>
    /** @type {HTMLInputElement} */ (
      h("input", { inputmode: "numeric", autocomplete: "one-time-code", required: true, pattern: "[0-9٠-٩۰-۹]{6}", maxlength: 6 })
    );
  const sections = [];
  if (!profile.activation.mobile_confirmed && profile.status === "pending_activation") {
    const code = codeInput();
    const form = actionForm(
      report,
      async () => {
        const state = await API.confirmMobile(api, { body: { organization_id: org, code: code.value.trim() } });
        refresh(t(state.status === "active" ? "me.active" : "me.mobile_confirmed"));
      },
      null,
      field(t("me.sms_code"), code, t("me.sms_code_hint")),
      h("button", { type: "submit" }, t("me.confirm")),
    );
    const resend = actionButton(
      t("me.resend_sms"),
      report,
      async () => {
        await API.resendActivation(api, { path: { org, id: profile.id }, body: { sms: true, email: false } });
        return t("user.resent");
      },
      { class: "link" },
    );
    sections.push(
      h(
        "section",
        { "aria-labelledby": "code-title" },
        h("h2", { id: "code-title" }, t("me.activate")),
        profile.activation.email_confirmed ? null : h("p", null, t("me.email_first")),
        form,
        resend,
      ),
    );
  }
  for (const [channel, change] of Object.entries(profile.pending)) {
    const code = codeInput();
    const form = actionForm(
      report,
      async () => {
        await API.confirmContact(api, {
          path: { org, id: profile.id },
          body: { channel: /** @type {"email" | "mobile"} */ (channel), code: code.value.trim() },
        });
        refresh(t("me.contact_confirmed"));
      },
      null,
      field(t("me.contact_code", { channel: t(`channel.${channel}`), value: isolate(change?.value ?? "") }), code),
      h("button", { type: "submit" }, t("me.confirm")),
    );
    sections.push(
      h("section", { class: "pending-change" }, h("h2", null, t("me.confirm_change", { channel: t(`channel.${channel}`) })), form),
    );
  }
  const history = auditSection(org, profile.id);
  show(
    t("me.title"),
    report.element,
    profileFacts(profile),
    ...sections,
    h("section", null, h("h2", null, t("user.history")), history.element),
  );
  await history.load();
}
