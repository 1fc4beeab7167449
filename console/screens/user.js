// @ts-check
// A user's page: profile, messages, permissions, contact changes, renewal, suspension.

import * as API from "../api.js";
import { act, actionButton, actionForm, establishmentList, field, h, idempotencyKey, isolate, ltr, outcome, table } from "../dom.js";
import { ApiError } from "../http.js";
import * as i18n from "../i18n.js";
import { date, dateTime, money, t } from "../i18n.js";
import { api, failed, nameOf, orgNav, personText, refresh, show, statusBadge } from "../shell.js";
import { auditSection } from "./audit.js";

/** @param {API.Profile} profile */
export function profileFacts(profile) {
  return h(
    "dl",
    { class: "facts" },
    h("dt", null, t("user.id")),
    h("dd", null, profile.id),
    h("dt", null, t("user.status")),
    h("dd", null, statusBadge(profile.status)),
    h("dt", null, t("user.role")),
    h("dd", null, t(`role.${profile.role}`)),
    profile.user_type ? [h("dt", null, t("user.user_type")), h("dd", null, t(`user_type.${profile.user_type}`))] : null,
    h("dt", null, t("user.establishments")),
    h("dd", null, establishmentList(profile.establishments)),
    h("dt", null, t("user.email")),
    h("dd", null, ltr(profile.email)),
    h("dt", null, t("user.mobile")),
    h("dd", null, ltr(profile.mobile)),
    h("dt", null, t("user.job_title")),
    h("dd", null, profile.job_title ?? "—"),
    h("dt", null, t("user.seat")),
    h(
      "dd",
      null,
      profile.seat ? t("user.seat_period", { from: date(profile.seat.starts_at), to: date(profile.seat.ends_at) }) : t("user.no_seat"),
    ),
    profile.next_seat
      ? [
          h("dt", null, t("user.next_seat")),
          h("dd", null, t("user.seat_period", { from: date(profile.next_seat.starts_at), to: date(profile.next_seat.ends_at) })),
        ]
      : null,
    profile.iqama_expiry ? [h("dt", null, t("user.iqama_expiry")), h("dd", null, date(profile.iqama_expiry))] : null,
  );
}

/**
 * Whether a message can be sent again from here (the API's rule: a contact code while its
 * change is pending; a reminder or notice that failed or was undeliverable).
 * @param {API.Profile} profile
 * @param {string} slot
 * @param {string} state
 */
function resendable(profile, slot, state) {
  if (slot === "verification_email") return Boolean(profile.pending.email);
  if (slot === "verification_sms") return Boolean(profile.pending.mobile);
  if (slot.startsWith("activation_")) return false;
  return state === "failed" || state === "undeliverable";
}

/**
 * Where each message of the user stands, with a way to send again what can be.
 * @param {API.Profile} profile
 * @param {(slot: string) => Node} resendButton
 */
function messages(profile, resendButton) {
  const rows = Object.entries(profile.messages).map(([slot, state]) => [
    t(`slot.${slot}`),
    t(`message.${state.state}`),
    dateTime(state.updated_at),
    state.reason ? t("message.reason", { reason: state.reason }) : "—",
    resendable(profile, slot, state.state) ? resendButton(slot) : "—",
  ]);
  return rows.length
    ? table(
        t("user.messages_caption"),
        [t("user.message"), t("user.state"), t("user.updated"), t("user.reason"), t("user.message_action")],
        rows,
      )
    : h("p", null, t("user.no_messages"));
}

/**
 * @param {string} org
 * @param {string} id
 */
export async function user(org, id) {
  let profile, permissions, catalog, organization;
  try {
    [profile, permissions, catalog, organization] = await Promise.all([
      API.readProfile(api, { path: { org, id } }),
      API.readPermissions(api, { path: { org, id } }),
      API.catalog(api),
      API.readOrganization(api, { path: { org } }),
    ]);
  } catch (error) {
    return failed(error);
  }
  const resident = profile.id.startsWith("2");
  const report = outcome();
  // What a renewal would cost and buy, if the API would allow one (it refuses as the
  // renewal itself would: a suspended user, one renewed ahead, a caller who may not).
  /** @type {Awaited<ReturnType<typeof API.renewalQuote>> | null} */
  let renewal = null;
  try {
    renewal = await API.renewalQuote(api, { path: { org, id } });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status >= 500) return failed(error);
  }

  // Activation: confirmations, and a fresh link or code.
  const resend = (/** @type {"email" | "sms"} */ channel) => {
    const button = actionButton(t(`user.resend_${channel}`), report, async () => {
      await API.resendActivation(api, { path: { org, id }, body: { email: channel === "email", sms: channel === "sms" } });
      return t("user.resent");
    });
    return button;
  };
  const activation = h(
    "section",
    { "aria-labelledby": "activation-title" },
    h("h2", { id: "activation-title" }, t("user.activation")),
    h(
      "p",
      null,
      t(profile.activation.email_confirmed ? "user.email_confirmed" : "user.email_waiting"),
      " · ",
      t(profile.activation.mobile_confirmed ? "user.mobile_confirmed" : "user.mobile_waiting"),
    ),
    profile.status === "pending_activation"
      ? h(
          "div",
          { class: "actions" },
          profile.activation.email_confirmed ? null : resend("email"),
          profile.activation.mobile_confirmed ? null : resend("sms"),
        )
      : null,
    messages(profile, (slot) =>
      actionButton(t("user.send_again"), report, async () => {
        const which = /** @type {Parameters<typeof API.resendMessage>[1]["path"]["slot"]} */ (slot);
        await API.resendMessage(api, { path: { org, id, slot: which } });
        return t("user.sent_again", { message: t(`slot.${slot}`) });
      }),
    ),
  );

  // Contact details and settings.
  const email = /** @type {HTMLInputElement} */ (
    h("input", { type: "email", name: "email", value: profile.pending.email?.value ?? "", placeholder: profile.email, autocomplete: "off" })
  );
  const mobile = /** @type {HTMLInputElement} */ (
    h("input", {
      type: "tel",
      name: "mobile",
      dir: "ltr",
      value: profile.pending.mobile?.value ?? "",
      placeholder: profile.mobile,
      autocomplete: "off",
    })
  );
  const jobTitle = /** @type {HTMLInputElement} */ (h("input", { name: "job_title", maxlength: 100, value: profile.job_title ?? "" }));
  const language = /** @type {HTMLSelectElement} */ (
    h(
      "select",
      { name: "language" },
      h("option", { value: "ar", selected: profile.language === "ar" }, "العربية"),
      h("option", { value: "en", lang: "en", selected: profile.language === "en" }, "English"),
    )
  );
  const notification = (/** @type {"expiry_reminders" | "account_notices"} */ kind, /** @type {"email" | "sms"} */ channel) =>
    /** @type {HTMLInputElement} */ (
      h("input", { type: "checkbox", name: `${kind}.${channel}`, checked: profile.notifications[kind][channel] })
    );
  const boxes = {
    expiry_reminders: { email: notification("expiry_reminders", "email"), sms: notification("expiry_reminders", "sms") },
    account_notices: { email: notification("account_notices", "email"), sms: notification("account_notices", "sms") },
  };
  const pending = Object.entries(profile.pending).map(([channel, change]) => {
    const withdraw = actionButton(
      t("user.withdraw"),
      report,
      async () => {
        await API.cancelPendingContact(api, { path: { org, id, channel: /** @type {"email" | "mobile"} */ (channel) } });
        refresh(t("user.withdrawn"));
      },
      { class: "link" },
    );
    return h(
      "li",
      null,
      t("user.pending_change", {
        channel: t(`channel.${channel}`),
        value: isolate(change?.value ?? ""),
        until: dateTime(change?.code_expires_at),
      }),
      " ",
      withdraw,
    );
  });
  const editForm = actionForm(
    report,
    async () => {
      /** @type {Record<string, unknown>} */
      const body = { version: profile.version };
      if (email.value.trim() && email.value.trim() !== profile.email) body.email = email.value.trim();
      if (mobile.value.trim() && mobile.value.trim() !== profile.mobile) body.mobile = mobile.value.trim();
      if ((jobTitle.value.trim() || null) !== (profile.job_title ?? null)) body.job_title = jobTitle.value.trim() || null;
      if (language.value !== profile.language) body.language = language.value;
      const notifications = {
        expiry_reminders: { email: boxes.expiry_reminders.email.checked, sms: boxes.expiry_reminders.sms.checked },
        account_notices: { email: boxes.account_notices.email.checked, sms: boxes.account_notices.sms.checked },
      };
      if (JSON.stringify(notifications) !== JSON.stringify(profile.notifications)) body.notifications = notifications;
      if (Object.keys(body).length === 1) return t("user.nothing_to_change");
      const changed = await API.modifyUser(api, { path: { org, id }, body: /** @type {any} */ (body) });
      const sent = [changed.verification_messages.email, changed.verification_messages.sms].includes("queued");
      refresh(t(sent ? "user.saved_codes_sent" : "user.saved"));
    },
    null,
    field(t("user.new_email"), email, t("user.new_contact_hint")),
    field(t("user.new_mobile"), mobile, t("user.new_contact_hint")),
    field(t("user.job_title"), jobTitle),
    field(t("user.language"), language),
    h(
      "fieldset",
      { class: "checks" },
      h("legend", null, t("user.notifications")),
      h("label", null, boxes.expiry_reminders.email, ` ${t("user.reminders_email")}`),
      h("label", null, boxes.expiry_reminders.sms, ` ${t("user.reminders_sms")}`),
      h("label", null, boxes.account_notices.email, ` ${t("user.notices_email")}`),
      h("label", null, boxes.account_notices.sms, ` ${t("user.notices_sms")}`),
    ),
    h("button", { type: "submit" }, t("user.save")),
  );
  const details = h(
    "section",
    { "aria-labelledby": "details-title" },
    h("h2", { id: "details-title" }, t("user.details")),
    pending.length ? h("ul", { class: "pending" }, pending) : null,
    editForm,
  );

  // Permissions: establishment × service.
  const services = catalog.services.filter((s) => s.platform === "both" || s.platform === organization.pricing_plan);
  const grantsForm = actionForm(
    report,
    async () => {
      /** @type {Record<string, string[]>} */
      const grants = {};
      for (const box of grantsForm.querySelectorAll("input[type=checkbox]:checked")) {
        const input = /** @type {HTMLInputElement} */ (box);
        (grants[input.dataset.establishment ?? ""] ??= []).push(input.value);
      }
      permissions = await API.setPermissions(api, { path: { org, id }, body: { version: permissions.version, grants } });
      return t("user.permissions_saved");
    },
    null,
    permissions.establishments.map((establishment) =>
      h(
        "fieldset",
        { class: "checks grants" },
        h("legend", null, t("user.grants_on", { establishment: isolate(establishment) })),
        services.map((service) => {
          const refused = service.saudi_only && resident;
          const box = h("input", {
            type: "checkbox",
            value: service.code,
            dataset: { establishment },
            checked: (permissions.grants[establishment] ?? []).includes(service.code),
            disabled: refused,
            "aria-describedby": service.saudi_only ? "saudi-only-note" : false,
          });
          return h(
            "label",
            { class: refused ? "refused" : null },
            box,
            ` ${i18n.current() === "ar" ? service.name.ar : service.name.en}`,
            service.saudi_only ? h("span", { class: "badge" }, t("user.saudi_only")) : null,
          );
        }),
      ),
    ),
    h("p", { class: "hint", id: "saudi-only-note" }, resident ? t("user.saudi_only_refused") : t("user.saudi_only_note")),
    h("button", { type: "submit" }, t("user.save_permissions")),
  );
  const permissionsSection = h(
    "section",
    { "aria-labelledby": "permissions-title" },
    h("h2", { id: "permissions-title" }, t("user.permissions")),
    grantsForm,
  );

  // Renewal (its price, period and terms shown before paying) and suspension.
  let renewalKey = idempotencyKey();
  const renew = /** @type {HTMLButtonElement} */ (
    h("button", { type: "button" }, renewal ? t("user.renew_for", { amount: money(renewal.price_halalas) }) : t("user.renew"))
  );
  const renewDialog = /** @type {HTMLDialogElement} */ (
    h(
      "dialog",
      { "aria-labelledby": "renew-title", "aria-describedby": "renew-terms" },
      h("h2", { id: "renew-title" }, t("user.renew_confirm_title", { name: nameOf(profile.name) })),
      renewal
        ? h(
            "dl",
            { class: "facts", id: "renew-terms" },
            h("dt", null, t("user.renew_price")),
            h("dd", null, money(renewal.price_halalas)),
            h("dt", null, t("user.renew_period")),
            h("dd", null, t("user.seat_period", { from: date(renewal.starts_at), to: date(renewal.ends_at) })),
            h("dt", null, t("user.renew_balance_after")),
            h("dd", null, money(Math.max(renewal.balance_halalas - renewal.price_halalas, 0))),
          )
        : null,
      h("p", null, t("user.renew_non_refundable")),
      renewal && !renewal.sufficient
        ? h("p", { role: "alert" }, t("user.renew_insufficient", { balance: money(renewal.balance_halalas) }))
        : null,
      h(
        "form",
        { method: "dialog", class: "actions" },
        h("button", { type: "submit", value: "cancel", class: "secondary", autofocus: true }, t("user.renew_cancel")),
        renewal?.sufficient
          ? h("button", { type: "submit", value: "renew", class: "primary" }, t("user.renew_do", { amount: money(renewal.price_halalas) }))
          : null,
      ),
    )
  );
  renewDialog.addEventListener("close", () => {
    if (renewDialog.returnValue !== "renew") return;
    act(renew, report, async () => {
      const receipt = await API.renew(api, { path: { org, id }, headers: { "Idempotency-Key": renewalKey } });
      renewalKey = idempotencyKey();
      // The page is drawn again, the new period in it, the result at its top.
      refresh(t("user.renewed", { until: date(receipt.renewed.ends_at), amount: money(receipt.amount_charged_halalas) }));
    });
  });
  renew.addEventListener("click", () => renewDialog.showModal());
  const reason = /** @type {HTMLTextAreaElement} */ (h("textarea", { name: "reason", maxlength: 500, required: true, rows: 2 }));
  const dialog = /** @type {HTMLDialogElement} */ (
    h(
      "dialog",
      { "aria-labelledby": "suspend-title", "aria-describedby": "suspend-warning" },
      h("h2", { id: "suspend-title" }, t("user.suspend_confirm_title", { name: personText(id, profile.name) })),
      h("p", { id: "suspend-warning" }, t("user.suspend_warning")),
      h(
        "form",
        { method: "dialog", class: "actions" },
        h("button", { type: "submit", value: "cancel", class: "secondary", autofocus: true }, t("user.suspend_cancel")),
        h("button", { type: "submit", value: "suspend", class: "danger" }, t("user.suspend_do")),
      ),
    )
  );
  dialog.addEventListener("close", () => {
    if (dialog.returnValue !== "suspend") return;
    act(suspendButton, report, async () => {
      await API.suspend(api, { path: { org, id }, body: { reason: reason.value.trim() } });
      refresh(t("user.suspended"));
    });
  });
  const suspendButton = /** @type {HTMLButtonElement} */ (h("button", { type: "button", class: "danger" }, t("user.suspend")));
  suspendButton.addEventListener("click", () => {
    if (!reason.reportValidity()) return;
    dialog.showModal();
  });
  const seat = h(
    "section",
    { "aria-labelledby": "seat-title" },
    h("h2", { id: "seat-title" }, t("user.seat_and_status")),
    profile.status === "suspended"
      ? h("p", null, t("user.is_suspended"))
      : [
          renewal ? h("div", { class: "actions" }, renew) : null,
          field(t("user.suspend_reason"), reason, t("user.suspend_reason_hint")),
          h("div", { class: "actions" }, suspendButton),
        ],
    dialog,
    renewDialog,
  );

  const history = auditSection(org, id);
  show(
    t("user.title", { name: nameOf(profile.name) }),
    orgNav(org, "users"),
    report.element,
    profileFacts(profile),
    activation,
    seat,
    details,
    permissionsSection,
    h("section", { "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, t("user.history")), history.element),
  );
  await history.load();
}
