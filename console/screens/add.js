// @ts-check
// Adding users: a group of persons, their quote, then the payment.

import * as API from "../api.js";
import { act, actionButton, field, h, idempotencyKey, ltr, outcome, table } from "../dom.js";
import { date, money, t } from "../i18n.js";
import { api, failed, orgNav, show, statusBadge } from "../shell.js";

/** The most persons one subscription may carry (`too_many_persons` past it). */
const MAX_PERSONS = 24;

/** @param {string} org */
export async function add(org) {
  let organization;
  try {
    organization = await API.readOrganization(api, { path: { org } });
  } catch (error) {
    return failed(error);
  }
  const muqeem = organization.pricing_plan === "muqeem";
  const rows = h("div", { class: "persons" });
  const report = outcome();
  const quoted = h("div", { "aria-live": "polite" });
  // After a removal the rows are numbered 1, 2, 3 again (never 1, 3, 4).
  const renumber = () =>
    [...rows.querySelectorAll("fieldset.person")].forEach((row, index) => {
      /** @type {HTMLElement} */ (row.querySelector("legend")).textContent = t("add.person", { n: index + 1 });
      const remove = row.querySelector("button.remove-person");
      if (remove) remove.textContent = t("add.remove", { n: index + 1 });
    });
  const addRow = () => {
    const n = rows.children.length + 1;
    const legend = t("add.person", { n });
    const id = h("input", { name: "id", inputmode: "numeric", autocomplete: "off", required: true, pattern: "[0-9٠-٩۰-۹ ]{10,14}" });
    const establishments = h(
      "fieldset",
      { class: "checks" },
      h("legend", null, t("add.establishments")),
      organization.establishments.map((e) =>
        h("label", null, h("input", { type: "checkbox", name: "establishment", value: e.id }), ` ${e.name} (`, ltr(e.id), ")"),
      ),
    );
    const userType = muqeem
      ? field(
          t("add.user_type"),
          h(
            "select",
            { name: "user_type" },
            ["residents_and_partners", "partners_only"].map((v) => h("option", { value: v }, t(`user_type.${v}`))),
          ),
        )
      : null;
    const language = field(
      t("add.language"),
      h("select", { name: "language" }, h("option", { value: "ar" }, "العربية"), h("option", { value: "en", lang: "en" }, "English")),
    );
    const title = field(t("add.job_title"), h("input", { name: "job_title", maxlength: 100 }), t("add.optional"));
    const remove = h(
      "button",
      {
        type: "button",
        class: "link remove-person",
        onclick: () => {
          row.remove();
          renumber();
        },
      },
      t("add.remove", { n }),
    );
    const row = h(
      "fieldset",
      { class: "person" },
      h("legend", null, legend),
      field(t("add.id"), id, t("add.id_hint")),
      establishments,
      userType,
      language,
      title,
      n > 1 ? remove : null,
    );
    rows.append(row);
    /** @type {HTMLInputElement} */ (id).focus();
  };
  /** @returns {API.SubscriptionRequest} */
  const request = () => ({
    persons: [...rows.querySelectorAll("fieldset.person")].map((row) => {
      const value = (/** @type {string} */ name) =>
        /** @type {HTMLInputElement | null} */ (row.querySelector(`[name="${name}"]`))?.value ?? "";
      const jobTitle = value("job_title").trim();
      return {
        id: value("id").trim(),
        establishments: [...row.querySelectorAll('input[name="establishment"]:checked')].map(
          (box) => /** @type {HTMLInputElement} */ (box).value,
        ),
        user_type: muqeem ? /** @type {API.UserType} */ (value("user_type")) : undefined,
        language: /** @type {"ar" | "en"} */ (value("language")),
        job_title: jobTitle || undefined,
      };
    }),
  });
  /** The key of the payment being confirmed: a retry of the same confirmation is never charged twice. */
  let key = idempotencyKey();
  const form = /** @type {HTMLFormElement} */ (
    h(
      "form",
      {
        onsubmit: (/** @type {SubmitEvent} */ event) => {
          event.preventDefault();
          const persons = request();
          /** @type {import("../dom.js").Locate} */
          const locate = (path) => {
            const found = /^persons\[(\d+)\]\.(\w+)/.exec(path);
            if (!found) return null;
            const n = Number(found[1]);
            const row = rows.querySelectorAll("fieldset.person")[n];
            const element = /** @type {HTMLElement | null | undefined} */ (
              found[2] === "establishments" ? row?.querySelector("fieldset.checks input") : row?.querySelector(`[name="${found[2]}"]`)
            );
            return element ? { element, label: `${t("add.person", { n: n + 1 })} · ${t(`add.field_${found[2]}`)}` } : null;
          };
          act(
            form,
            report,
            async () => {
              const quote = await API.quoteSubscription(api, { path: { org }, body: persons });
              key = idempotencyKey();
              const confirm = actionButton(
                t("add.confirm", { total: money(quote.total_halalas) }),
                report,
                async () => {
                  // The total shown is the total charged: a changed price is refused (409).
                  const body = { ...persons, expected_total_halalas: quote.total_halalas };
                  const receipt = await API.subscribe(api, { path: { org }, headers: { "Idempotency-Key": key }, body });
                  quoted.replaceChildren(
                    h("h2", { tabindex: "-1" }, t("add.done", { count: receipt.users.length })),
                    table(
                      t("add.added_caption"),
                      [t("users.id"), t("users.status"), t("add.seat_ends"), t("add.messages")],
                      receipt.users.map((user) => [
                        h("a", { href: `#/o/${org}/u/${user.id}` }, ltr(user.id)),
                        statusBadge(user.status),
                        date(user.seat.ends_at),
                        `${t("channel.email")}: ${t(`delivery.${user.activation_messages.email}`)} · ${t("channel.sms")}: ${t(`delivery.${user.activation_messages.sms}`)}`,
                      ]),
                    ),
                    h(
                      "p",
                      null,
                      t("add.charged", { amount: money(receipt.amount_charged_halalas), balance: money(receipt.balance_after_halalas) }),
                    ),
                  );
                  // A fresh form for the next group; the receipt keeps the focus.
                  rows.replaceChildren();
                  addRow();
                  /** @type {HTMLElement} */ (quoted.firstElementChild).focus();
                },
                { class: "primary", disabled: !quote.sufficient },
              );
              quoted.replaceChildren(
                h("h2", null, t("add.quote_title")),
                table(
                  t("add.quote_caption"),
                  [t("users.id"), t("add.price")],
                  quote.persons.map((person) => [ltr(person.id), person.free ? t("add.free") : money(person.price_halalas)]),
                ),
                h("p", null, t("add.total", { total: money(quote.total_halalas), balance: money(quote.balance_halalas) })),
                h("p", null, t("add.seat_until", { date: date(quote.seat_ends_at) })),
                quote.sufficient ? "" : h("p", { class: "outcome error", role: "alert" }, t("add.insufficient")),
                confirm,
              );
              confirm.focus();
            },
            locate,
          );
        },
      },
      rows,
      h(
        "div",
        { class: "actions" },
        h(
          "button",
          { type: "button", class: "add-person", onclick: () => (rows.children.length < MAX_PERSONS ? addRow() : undefined) },
          t("add.another"),
        ),
        h("button", { type: "submit" }, t("add.quote")),
      ),
    )
  );
  addRow();
  show(t("add.title"), orgNav(org, "add"), h("p", null, t("add.intro")), form, report.element, quoted);
  // The first person's ID field takes the focus (unless a kept draft was put back).
  /** @type {HTMLInputElement | null} */ (rows.querySelector('input[name="id"]'))?.focus();
}
