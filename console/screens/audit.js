// @ts-check
// The audit trail, the organization's or one user's: filters, readable changes, export.

import * as API from "../api.js";
import { act, establishmentList, field, growingTable, h, outcome, save } from "../dom.js";
import * as i18n from "../i18n.js";
import { date, dateTime, money, t } from "../i18n.js";
import { actorText, api, orgNav, personText, show } from "../shell.js";

const ACTIONS = [
  "organization.onboarded",
  "organization.settings_changed",
  "registry.person_saved",
  "balance.credited",
  "user.subscribed",
  "activation.email_confirmed",
  "activation.mobile_confirmed",
  "activation.mobile_code_rejected",
  "activation.resent",
  "message.resent",
  "message.undelivered",
  "permissions.changed",
  "user.modified",
  "user.iqama_updated",
  "contact.change_confirmed",
  "contact.code_rejected",
  "contact.change_cancelled",
  "user.suspended",
  "seat.renewed",
  "seat.reminder_queued",
  "seat.expired",
  "audit.exported",
  "ledger.exported",
];

/**
 * What an audit entry changed, readable: one line per field, "before → after" for a change,
 * lists joined; the full grants before and after are left out where what was added and
 * removed says it.
 * @param {unknown} changes
 */
function changesText(changes) {
  if (!changes || typeof changes !== "object" || Array.isArray(changes)) return "—";
  const all = /** @type {Record<string, any>} */ (changes);
  const grants = "added" in all || "removed" in all;
  // A contact change says before and after at the top: one line.
  const pairAtTop = !grants && "before" in all && "after" in all;
  // A pair that did not change (a renewal's status, active before and after) says nothing.
  const unchanged = (/** @type {any} */ v) =>
    v && typeof v === "object" && "before" in v && "after" in v && JSON.stringify(v.before) === JSON.stringify(v.after);
  const entries = Object.entries(all).filter(
    ([key, v]) => !key.endsWith("seat_id") && !((grants || pairAtTop) && (key === "before" || key === "after")) && !unchanged(v),
  );
  const separator = i18n.current() === "ar" ? "، " : ", ";
  /** @param {string} key @param {unknown} v @returns {string} */
  const value = (key, v) => {
    if (v === null || v === undefined || v === "") return "—";
    if (Array.isArray(v)) return v.length ? v.map((item) => value(key, item)).join(separator) : "—";
    if (typeof v === "object")
      return Object.entries(v)
        .map(([k, item]) => `${label(k)} ${value(k, item)}`)
        .join(separator);
    if (typeof v === "boolean") return t(v ? "change.yes" : "change.no");
    if (key === "status" && typeof v === "string") return t(`status.${v}`);
    if (key === "channel" && typeof v === "string" && i18n.has(`change.channel_${v}`)) return t(`change.channel_${v}`);
    if (key.endsWith("_halalas") && typeof v === "number") return money(v);
    if (typeof v === "string" && /^\d{4}-\d{2}-\d{2}T/.test(v)) return date(v);
    return String(v);
  };
  const label = (/** @type {string} */ key) => (i18n.has(`change.${key}`) ? t(`change.${key}`) : key.replace(/_/g, " "));
  // Each value isolated, left to right when it holds no Arabic (a mobile, an ID), so that
  // the sentence around it cannot reorder it; the arrow points from before to after in the
  // reading direction.
  const arrow = i18n.current() === "ar" ? " ← " : " → ";
  const isolated = (/** @type {string} */ text) => h("bdi", { dir: /[\u0600-\u06FF]/.test(text) ? "auto" : "ltr" }, text);
  const lines = entries.map(([key, v]) => {
    const pair = v && typeof v === "object" && !Array.isArray(v) && ("before" in v || "after" in v);
    const pending = v && typeof v === "object" && !Array.isArray(v) && "pending" in v;
    const text = pair
      ? [isolated(value(key, v.before)), arrow, isolated(value(key, v.after))]
      : pending
        ? [isolated(value(key, v.current)), arrow, isolated(value(key, v.pending)), ` (${t("change.pending")})`]
        : [isolated(value(key, v))];
    return h("li", null, `${label(key)}: `, ...text);
  });
  if (pairAtTop) lines.unshift(h("li", null, isolated(value("before", all.before)), arrow, isolated(value("after", all.after))));
  return lines.length ? h("ul", { class: "changes" }, lines) : "—";
}

/**
 * An audit trail: the organization's, or one user's.
 * @param {string} org
 * @param {string | null} user
 */
export function auditSection(org, user) {
  const report = outcome();
  const action = /** @type {HTMLSelectElement} */ (
    h(
      "select",
      { name: "action" },
      h("option", { value: "" }, t("audit.any_action")),
      ACTIONS.map((a) => h("option", { value: a }, t(`action.${a}`))),
    )
  );
  const from = /** @type {HTMLInputElement} */ (h("input", { type: "date", name: "from" }));
  const to = /** @type {HTMLInputElement} */ (h("input", { type: "date", name: "to" }));
  const auditTable = growingTable(user ? t("audit.user_caption") : t("audit.caption"), [
    t("audit.at"),
    t("audit.actor"),
    t("audit.what"),
    t("audit.target"),
    t("audit.establishments"),
    t("audit.details"),
  ]);
  const addRow = auditTable.add;
  const more = /** @type {HTMLButtonElement} */ (h("button", { type: "button", hidden: true }, t("audit.more")));
  const exportButton = /** @type {HTMLButtonElement} */ (h("button", { type: "button" }, t("audit.export")));
  /** @type {string | undefined} */
  let cursor;
  const query = () => ({
    action: action.value ? [/** @type {API.AuditAction} */ (action.value)] : undefined,
    from: from.value || undefined,
    to: to.value || undefined,
  });
  const load = async (/** @type {boolean} */ fresh) => {
    if (fresh) {
      auditTable.clear();
      cursor = undefined;
    }
    const page = user
      ? await API.userAudit(api, { path: { org, id: user }, query: { ...query(), limit: 50, cursor } })
      : await API.organizationAudit(api, { path: { org }, query: { ...query(), limit: 50, cursor } });
    // Named where the API knows the person and the reader may see them (an older API: no one).
    const people = page.people ?? {};
    for (const entry of page.entries) {
      addRow([
        dateTime(entry.at),
        actorText(entry.actor, people),
        t(`action.${entry.action}`),
        entry.target ? h("a", { href: `#/o/${org}/u/${entry.target}` }, personText(entry.target, people[entry.target])) : "—",
        establishmentList(entry.establishments),
        changesText(entry.changes),
      ]);
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => act(more, report, () => load(false)));
  exportButton.addEventListener("click", () =>
    act(exportButton, report, async () => {
      const file = user
        ? await API.userAuditCsv(api, { path: { org, id: user }, query: query() })
        : await API.organizationAuditCsv(api, { path: { org }, query: query() });
      save(file.blob, file.fileName);
      return t("audit.exported");
    }),
  );
  const filters = h(
    "form",
    {
      class: "filters",
      onsubmit: (/** @type {SubmitEvent} */ event) => {
        event.preventDefault();
        act(/** @type {HTMLFormElement} */ (event.currentTarget), report, () => load(true));
      },
    },
    field(t("audit.action"), action),
    field(t("audit.from"), from),
    field(t("audit.to"), to),
    h("button", { type: "submit" }, t("audit.filter")),
  );
  const list = auditTable.element;
  const element = h("section", { class: "audit" }, filters, h("div", { class: "actions" }, exportButton), report.element, list, more);
  return { element, load: () => load(true).catch((error) => report.fail(error)) };
}

/** @param {string} org */
export async function audit(org) {
  const section = auditSection(org, null);
  show(t("audit.title"), orgNav(org, "audit"), section.element);
  await section.load();
}
