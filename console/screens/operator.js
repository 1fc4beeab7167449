// @ts-check
// The operator's tools: open an organization and credit it, onboard one, the registry.

import * as API from "../api.js";
import { actionForm, field, h, isolate, ltr, outcome } from "../dom.js";
import { money, t } from "../i18n.js";
import { api, personName, show } from "../shell.js";

export function operator() {
  const report = outcome();
  // Open an organization, credit its balance.
  const number = /** @type {HTMLInputElement} */ (h("input", { name: "org", inputmode: "numeric", required: true }));
  const found = h("div", { "aria-live": "polite" });
  const openForm = actionForm(
    report,
    async () => {
      const org = number.value.trim();
      const organization = await API.readOrganization(api, { path: { org } });
      const amount = /** @type {HTMLInputElement} */ (
        h("input", { type: "number", name: "amount", min: "0.01", step: "0.01", required: true })
      );
      const reference = /** @type {HTMLInputElement} */ (h("input", { name: "payment_reference", required: true, maxlength: 100 }));
      const creditForm = actionForm(
        report,
        async () => {
          const body = { amount_halalas: Math.round(Number(amount.value) * 100), payment_reference: reference.value.trim() };
          const receipt = await API.creditBalance(api, { path: { org }, body });
          return t("operator.credited", { amount: money(receipt.credited_halalas), balance: money(receipt.balance_halalas) });
        },
        null,
        field(t("operator.amount"), amount, t("operator.amount_hint")),
        field(t("operator.reference"), reference, t("operator.reference_hint")),
        h("button", { type: "submit" }, t("operator.credit")),
      );
      found.replaceChildren(
        h("h3", null, h("bdi", null, organization.name), " (", ltr(organization.id), ")"),
        h("p", null, t(`plan.${organization.pricing_plan}`), " · ", t("operator.manager", { id: isolate(organization.manager_id) })),
        creditForm,
      );
    },
    null,
    field(t("operator.organization"), number),
    h("button", { type: "submit" }, t("home.open")),
  );

  // Onboard an organization.
  const input = (/** @type {string} */ name, /** @type {Record<string, any>} */ extra = {}) =>
    /** @type {HTMLInputElement} */ (h("input", { name, required: true, ...extra }));
  const unified = input("unified_number", { inputmode: "numeric" });
  const orgName = input("name", { maxlength: 200 });
  const plan = /** @type {HTMLSelectElement} */ (
    h(
      "select",
      { name: "pricing_plan" },
      h("option", { value: "muqeem" }, t("plan.muqeem")),
      h("option", { value: "qiwa" }, t("plan.qiwa")),
    )
  );
  const managerId = input("manager_id", { inputmode: "numeric" });
  const establishmentId = input("establishment_id");
  const establishmentName = input("establishment_name", { maxlength: 200 });
  const size = /** @type {HTMLSelectElement} */ (
    h(
      "select",
      { name: "size" },
      ["micro", "small", "medium", "large", "giant"].map((s) => h("option", { value: s }, t(`size.${s}`))),
    )
  );
  const createForm = actionForm(
    report,
    async () => {
      const created = await API.createOrganization(api, {
        body: {
          unified_number: unified.value.trim(),
          name: orgName.value.trim(),
          pricing_plan: /** @type {"muqeem" | "qiwa"} */ (plan.value),
          manager_id: managerId.value.trim(),
          establishments: [
            { id: establishmentId.value.trim(), name: establishmentName.value.trim(), size: /** @type {any} */ (size.value) },
          ],
        },
      });
      return t("operator.created", { name: isolate(created.name, "auto"), id: isolate(created.id) });
    },
    null,
    field(t("operator.unified_number"), unified),
    field(t("operator.name"), orgName),
    field(t("operator.plan"), plan),
    field(t("operator.manager_id"), managerId, t("operator.manager_hint")),
    field(t("operator.establishment_id"), establishmentId, t("operator.establishment_hint")),
    field(t("operator.establishment_name"), establishmentName),
    field(t("operator.size"), size),
    h("button", { type: "submit" }, t("operator.create")),
  );

  // The person registry.
  const personId = input("id", { inputmode: "numeric" });
  const nameAr = /** @type {HTMLInputElement} */ (h("input", { name: "name_ar", lang: "ar", maxlength: 200 }));
  const nameEn = /** @type {HTMLInputElement} */ (h("input", { name: "name_en", lang: "en", maxlength: 200 }));
  const nationality = input("nationality", { maxlength: 2, pattern: "[A-Za-z]{2}" });
  const iqamaExpiry = /** @type {HTMLInputElement} */ (h("input", { name: "iqama_expiry", type: "date" }));
  const employers = /** @type {HTMLInputElement} */ (h("input", { name: "employers" }));
  const personEmail = input("email", { type: "email" });
  const personMobile = input("mobile", { type: "tel", dir: "ltr" });
  const registryForm = actionForm(
    report,
    async () => {
      const saved = await API.savePerson(api, {
        path: { id: personId.value.trim() },
        body: {
          name: personName(nameAr.value.trim(), nameEn.value.trim()),
          nationality: nationality.value.trim().toUpperCase(),
          iqama_expiry: iqamaExpiry.value || null,
          employers: employers.value.split(/[,،\s]+/).filter(Boolean),
          email: personEmail.value.trim(),
          mobile: personMobile.value.trim(),
        },
      });
      return t("operator.person_saved", { id: isolate(saved.id) });
    },
    null,
    field(t("operator.person_id"), personId),
    field(t("operator.name_ar"), nameAr),
    field(t("operator.name_en"), nameEn),
    field(t("operator.nationality"), nationality, t("operator.nationality_hint")),
    field(t("operator.iqama_expiry"), iqamaExpiry, t("operator.iqama_hint")),
    field(t("operator.employers"), employers, t("operator.employers_hint")),
    field(t("operator.email"), personEmail),
    field(t("operator.mobile"), personMobile),
    h("button", { type: "submit" }, t("operator.save_person")),
  );
  show(
    t("operator.title"),
    report.element,
    h("section", { "aria-labelledby": "open-title" }, h("h2", { id: "open-title" }, t("operator.open")), openForm, found),
    h("section", { "aria-labelledby": "create-title" }, h("h2", { id: "create-title" }, t("operator.onboard")), createForm),
    h("section", { "aria-labelledby": "registry-title" }, h("h2", { id: "registry-title" }, t("operator.registry")), registryForm),
  );
}
