// @ts-check
// The organization's users: filters, the listing, the way to a user's page.

import * as API from "../api.js";
import { act, establishmentList, field, growingTable, h, isolate, ltr, outcome } from "../dom.js";
import { ApiError } from "../http.js";
import { date, t } from "../i18n.js";
import { api, failed, go, nameOf, orgNav, show, statusBadge } from "../shell.js";

/** @param {string} org */
export async function users(org) {
  let organization;
  try {
    organization = await API.readOrganization(api, { path: { org } });
  } catch (error) {
    return failed(error);
  }
  const q = /** @type {HTMLInputElement} */ (h("input", { type: "search", name: "q", maxlength: 100 }));
  const status = /** @type {HTMLSelectElement} */ (
    h(
      "select",
      { name: "status" },
      h("option", { value: "" }, t("users.any_status")),
      ["pending_activation", "active", "suspended", "expired"].map((s) => h("option", { value: s }, t(`status.${s}`))),
    )
  );
  const establishment = /** @type {HTMLSelectElement} */ (
    h(
      "select",
      { name: "establishment" },
      h("option", { value: "" }, t("users.any_establishment")),
      organization.establishments.map((e) => h("option", { value: e.id }, `${isolate(e.name, "auto")} (${isolate(e.id)})`)),
    )
  );
  const {
    element: list,
    add: addRow,
    clear,
  } = growingTable(t("users.caption"), [
    t("users.id"),
    t("users.name"),
    t("users.status"),
    t("users.establishments"),
    t("users.seat_ends"),
  ]);
  const more = /** @type {HTMLButtonElement} */ (h("button", { type: "button", hidden: true }, t("users.more")));
  const report = outcome();
  const counter = h("p", { class: "hint", "aria-live": "polite" });
  /** @type {string | undefined} */
  let cursor;
  let shown = 0;
  const load = async (/** @type {boolean} */ fresh) => {
    if (fresh) {
      clear();
      cursor = undefined;
      shown = 0;
    }
    const page = await API.listUsers(api, {
      path: { org },
      query: {
        q: q.value.trim() || undefined,
        status: /** @type {any} */ (status.value || undefined),
        establishment: establishment.value || undefined,
        limit: 50,
        cursor,
      },
    });
    for (const user of page.users) {
      addRow([
        h("a", { href: `#/o/${org}/u/${user.id}` }, ltr(user.id)),
        nameOf(user.name),
        statusBadge(user.status),
        establishmentList(user.establishments),
        date(user.seat_ends_at),
      ]);
    }
    shown += page.users.length;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    counter.textContent = t(cursor ? "users.shown_more" : "users.shown", { count: shown });
  };
  const filters = h(
    "form",
    {
      class: "filters",
      role: "search",
      onsubmit: (/** @type {SubmitEvent} */ event) => {
        event.preventDefault();
        act(/** @type {HTMLFormElement} */ (event.currentTarget), report, () => load(true));
      },
    },
    field(t("users.search"), q, t("users.search_hint")),
    field(t("users.status"), status),
    field(t("users.establishment"), establishment),
    h("button", { type: "submit" }, t("users.filter")),
  );
  more.addEventListener("click", () => act(more, report, () => load(false)));
  show(
    t("users.title", { name: organization.name }),
    orgNav(org, "users"),
    h("p", null, t(`plan.${organization.pricing_plan}`), " · ", h("a", { href: `#/o/${org}/add`, class: "button" }, t("nav.add"))),
    filters,
    report.element,
    list,
    counter,
    more,
  );
  try {
    await load(true);
  } catch (error) {
    if (error instanceof ApiError && error.code === "not_an_administrator") return go(`#/o/${org}/me`);
    report.fail(error);
  }
}
