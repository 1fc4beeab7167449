// @ts-check
// The balance and its ledger.

import * as API from "../api.js";
import { act, growingTable, h, isolate, outcome, save } from "../dom.js";
import { dateTime, money, t } from "../i18n.js";
import { actorText, api, orgNav, personText, show } from "../shell.js";

/** @param {string} org */
export async function balance(org) {
  const report = outcome();
  const ledgerTable = growingTable(t("ledger.caption"), [
    t("ledger.at"),
    t("ledger.direction"),
    t("ledger.amount"),
    t("ledger.balance_after"),
    t("ledger.reason"),
    t("ledger.actor"),
  ]);
  const addRow = ledgerTable.add;
  const summary = h("dl", { class: "facts" });
  const more = /** @type {HTMLButtonElement} */ (h("button", { type: "button", hidden: true }, t("ledger.more")));
  const exportButton = /** @type {HTMLButtonElement} */ (h("button", { type: "button" }, t("ledger.export")));
  /** @type {string | undefined} */
  let cursor;
  const load = async () => {
    const page = await API.readBalance(api, { path: { org }, query: { limit: 50, cursor } });
    summary.replaceChildren(
      h("dt", null, t("ledger.available")),
      h("dd", null, money(page.available_halalas)),
      h("dt", null, t("ledger.credited")),
      h("dd", null, money(page.total_credited_halalas)),
      h("dt", null, t("ledger.debited")),
      h("dd", null, money(page.total_debited_halalas)),
      h("dt", null, t("ledger.seats_sold")),
      h("dd", null, String(page.seats_sold)),
    );
    // Named where the API knows the person and the reader may see them (an older API: no one).
    const people = page.people ?? {};
    for (const entry of page.ledger) {
      const reason =
        entry.reason.kind === "credit"
          ? t("ledger.reason_credit", { reference: isolate(entry.reason.payment_reference ?? "") })
          : t(`ledger.reason_${entry.reason.purchase ?? "subscription"}`, {
              person: entry.reason.person ? personText(entry.reason.person, people[entry.reason.person]) : "",
            });
      addRow([
        dateTime(entry.at),
        t(`ledger.${entry.direction}`),
        money(entry.amount),
        money(entry.balance_after),
        reason,
        actorText(entry.actor, people),
      ]);
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => act(more, report, load));
  /** @type {string | null} */
  let exportCursor = null;
  exportButton.addEventListener("click", () =>
    act(exportButton, report, async () => {
      const file = await API.readBalanceCsv(api, { path: { org }, query: { cursor: exportCursor ?? undefined } });
      save(file.blob, file.fileName);
      exportCursor = file.nextCursor;
      exportButton.textContent = exportCursor ? t("ledger.export_next") : t("ledger.export");
      return t("ledger.exported");
    }),
  );
  const ledger = ledgerTable.element;
  show(t("ledger.title"), orgNav(org, "balance"), summary, h("div", { class: "actions" }, exportButton), report.element, ledger, more);
  try {
    await load();
  } catch (error) {
    report.fail(error);
  }
}
