// @ts-check
// The console: the screens of the seeds over the public API. Hash routes:
//   #/sign-in                     who is signing in
//   #/                            home: open an organization (or the operator's tools)
//   #/operator                    organizations, credits, the person registry
//   #/o/{org}                     the organization's users
//   #/o/{org}/add                 add users (quote, then pay)
//   #/o/{org}/balance             the balance and its ledger
//   #/o/{org}/audit               the audit trail
//   #/o/{org}/settings            the organization's settings (manager)
//   #/o/{org}/u/{id}              a user's page
//   #/o/{org}/me                  the signed-in person's own account (activation code, contact codes)
//   /activate#token=…             the page the activation email links to

import * as API from "./api.js";
import {
  BUSY_AFTER_MS,
  act,
  actionButton,
  actionForm,
  errorText,
  establishmentList,
  field,
  growingTable,
  h,
  idempotencyKey,
  ltr,
  outcome,
  save,
  table,
} from "./dom.js";
import { Api, ApiError } from "./http.js";
import * as i18n from "./i18n.js";
import { date, dateTime, money, t } from "./i18n.js";
import * as session from "./session.js";

/** @type {session.Config} */
let config;
const api = new Api(
  "",
  () => session.current()?.token ?? null,
  () => {
    // The session ended mid-way: say so, keep what was typed, come back here after.
    session.expire(location.hash || "#/", draftOf(main));
    go("#/sign-in");
  },
);

/** The fields of a screen, in order (never a password). @param {HTMLElement} root @returns {import("./session.js").Draft} */
function draftOf(root) {
  const fields = [...root.querySelectorAll("input, select, textarea")]
    .map((element) => /** @type {HTMLInputElement} */ (element))
    .filter((element) => element.type !== "password" && element.type !== "hidden")
    .map((element) => ({ name: element.name, value: element.value, checked: element.checked }));
  return { rows: root.querySelectorAll("fieldset.person").length, fields };
}

/** Puts a kept draft back into the screen just drawn. @param {HTMLElement} root @param {import("./session.js").Draft} draft */
function restore(root, draft) {
  const another = /** @type {HTMLButtonElement | null} */ (root.querySelector("button.add-person"));
  while (another && root.querySelectorAll("fieldset.person").length < draft.rows) another.click();
  const elements = [...root.querySelectorAll("input, select, textarea")]
    .map((element) => /** @type {HTMLInputElement} */ (element))
    .filter((element) => element.type !== "password" && element.type !== "hidden");
  draft.fields.forEach((kept, n) => {
    const element = elements[n];
    if (!element || element.name !== kept.name) return;
    if (element.type === "checkbox" || element.type === "radio") element.checked = kept.checked;
    else element.value = kept.value;
  });
}

const main = /** @type {HTMLElement} */ (document.getElementById("main"));
const top = /** @type {HTMLElement} */ (document.getElementById("top"));

/** @param {string} hash */
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/** The name in the reader's language. @param {{ ar?: string | null, en?: string | null } | undefined} name */
function nameOf(name) {
  if (!name) return "—";
  const preferred = i18n.current() === "ar" ? (name.ar ?? name.en) : (name.en ?? name.ar);
  return preferred ?? "—";
}

/**
 * A person's name as the registry takes it: in Arabic, in English, or both (an empty one is
 * left for the server to refuse by name).
 * @param {string} ar @param {string} en
 */
function personName(ar, en) {
  return ar ? { ar, en: en || null } : { en, ar: null };
}

/** @param {string} status */
function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, t(`status.${status}`));
}

/** What the last action did, shown once on the screen drawn after it. @type {string | null} */
let flash = null;

/** Draws the screen again, saying what was just done. @param {string} message */
function refresh(message) {
  flash = message;
  route();
}

/** Shows a screen: its title first, focused, so that a reader starts at the top. */
function show(title, ...content) {
  loaded();
  document.title = `${title} · ${t("app.name")}`;
  const heading = h("h1", { tabindex: "-1" }, title);
  const done = flash ? h("p", { class: "outcome ok", role: "status" }, flash) : "";
  flash = null;
  main.replaceChildren(heading, done, ...content);
  const draft = session.current() ? session.takeDraft(location.hash || "#/") : null;
  if (draft) {
    restore(main, draft);
    main.insertBefore(h("p", { class: "outcome ok", role: "status" }, t("signin.draft_restored")), heading.nextSibling);
  }
  heading.focus();
}

/** The pending navigation's timer (see `loading`). @type {ReturnType<typeof setTimeout> | null} */
let navigation = null;

/**
 * A screen is being fetched: after 300 ms the old one is marked busy (dimmed, `aria-busy`)
 * with a progress bar, so it is never taken for the new address's.
 */
function loading() {
  if (navigation) clearTimeout(navigation);
  navigation = setTimeout(() => {
    main.setAttribute("aria-busy", "true");
    document.body.classList.add("loading");
  }, BUSY_AFTER_MS);
}

function loaded() {
  if (navigation) clearTimeout(navigation);
  navigation = null;
  main.removeAttribute("aria-busy");
  document.body.classList.remove("loading");
}

/** @param {unknown} error */
function failed(error) {
  show(
    t("error.title"),
    h("p", { role: "alert", class: "outcome error" }, errorText(error)),
    h("p", null, h("a", { href: "#/" }, t("nav.home"))),
  );
}

/**
 * Who is signed in, as people say it: the name, with the ID masked beside it (the ID alone
 * when no name is known; an operator by role).
 * @param {session.Session} signedIn
 */
function who(signedIn) {
  const name = signedIn.name?.[i18n.current()] ?? signedIn.name?.en ?? signedIn.name?.ar;
  return name ? `${name} (\u2066${masked(signedIn.subject)}\u2069)` : `\u2066${signedIn.subject}\u2069`;
}

/** An ID number with all but its last four digits hidden. @param {string} id */
function masked(id) {
  return /^\d{10}$/.test(id) ? `••••••${id.slice(-4)}` : id;
}

function header() {
  const signedIn = session.current();
  const other = i18n.current() === "ar" ? "en" : "ar";
  top.replaceChildren(
    h("a", { class: "brand", href: "#/" }, t("app.name")),
    h(
      "div",
      { class: "top-actions" },
      h(
        "button",
        {
          type: "button",
          class: "link",
          lang: other,
          onclick: async () => {
            await i18n.use(other);
            route();
          },
        },
        t("app.other_language"),
      ),
      signedIn ? h("span", { class: "who" }, t("app.signed_in_as", { subject: who(signedIn) })) : null,
      signedIn
        ? h(
            "button",
            {
              type: "button",
              class: "link",
              onclick: () => {
                session.end();
                go("#/sign-in");
              },
            },
            t("app.sign_out"),
          )
        : null,
    ),
  );
}

/** The tabs of an organization's pages. @param {string} org @param {string} here */
function orgNav(org, here) {
  const base = `#/o/${org}`;
  const links = [
    ["users", base, t("nav.users")],
    ["add", `${base}/add`, t("nav.add")],
    ["balance", `${base}/balance`, t("nav.balance")],
    ["audit", `${base}/audit`, t("nav.audit")],
    ["settings", `${base}/settings`, t("nav.settings")],
  ];
  return h(
    "nav",
    { class: "tabs", "aria-label": t("nav.organization") },
    h(
      "ul",
      null,
      links.map(([key, href, label]) => h("li", null, h("a", { href, "aria-current": key === here ? "page" : false }, label))),
    ),
  );
}

// --- Sign-in and home -------------------------------------------------------------------

async function signIn() {
  if (config.auth.mode === "oidc") {
    const auth = config.auth;
    const button = h("button", { type: "button", onclick: () => session.oidcSignIn(auth) }, t("signin.with_provider"));
    const endedHere = session.endedUnderReader();
    show(
      t("signin.title"),
      endedHere ? h("p", { class: "outcome error", role: "alert" }, t("signin.session_ended")) : "",
      h("p", null, t("signin.provider_intro")),
      button,
    );
    return;
  }
  const identities = await session.localIdentities();
  const report = outcome();
  const ended = session.endedUnderReader();
  const choose = async (/** @type {session.Identity} */ identity, /** @type {HTMLButtonElement} */ button) => {
    await act(button, report, async () => {
      const started = await session.localSignIn(identity.subject, identity.name);
      header();
      const remembered = session.takeRemembered();
      if (remembered) go(remembered);
      else if (started.role === "operator") go("#/operator");
      else if (identity.organization) go(`#/o/${identity.organization}`);
      else go("#/");
    });
  };
  show(
    t("signin.title"),
    ended ? h("p", { class: "outcome error", role: "alert" }, t("signin.session_ended")) : "",
    h("p", null, t("signin.local_intro")),
    h(
      "ul",
      { class: "identities" },
      identities.map((identity) => {
        const button = /** @type {HTMLButtonElement} */ (
          h(
            "button",
            { type: "button", class: "identity" },
            h("strong", null, nameOf(identity.name)),
            h("span", null, identity.note[i18n.current()]),
          )
        );
        button.addEventListener("click", () => choose(identity, button));
        return h("li", null, button);
      }),
    ),
    report.element,
  );
}

function home() {
  const signedIn = session.current();
  if (signedIn?.role === "operator") return go("#/operator");
  const input = /** @type {HTMLInputElement} */ (
    h("input", { name: "org", inputmode: "numeric", autocomplete: "off", required: true, pattern: "[0-9٠-٩]{10}" })
  );
  const form = h(
    "form",
    {
      onsubmit: (/** @type {SubmitEvent} */ event) => {
        event.preventDefault();
        go(`#/o/${input.value.trim()}`);
      },
    },
    field(t("home.organization"), input, t("home.organization_hint")),
    h("button", { type: "submit" }, t("home.open")),
  );
  show(t("home.title"), form);
}

// --- The organization's users -------------------------------------------------------------

/** @param {string} org */
async function users(org) {
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
      organization.establishments.map((e) => h("option", { value: e.id }, `${e.name} (\u2066${e.id}\u2069)`)),
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

// --- Adding users: a quote, then the payment ----------------------------------------------

/** The most persons one subscription may carry (`too_many_persons` past it). */
const MAX_PERSONS = 24;

/** @param {string} org */
async function add(org) {
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
          /** @type {import("./dom.js").Locate} */
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

// --- Balance and ledger ------------------------------------------------------------------

/** @param {string} org */
async function balance(org) {
  const report = outcome();
  const ledgerTable = growingTable(t("ledger.caption"), [
    t("ledger.at"),
    t("ledger.direction"),
    t("ledger.amount"),
    t("ledger.balance_after"),
    t("ledger.reason"),
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
    for (const entry of page.ledger) {
      const reason =
        entry.reason.kind === "credit"
          ? t("ledger.reason_credit", { reference: entry.reason.payment_reference ?? "" })
          : t(`ledger.reason_${entry.reason.purchase ?? "subscription"}`, { person: entry.reason.person ?? "" });
      addRow([dateTime(entry.at), t(`ledger.${entry.direction}`), money(entry.amount), money(entry.balance_after), reason]);
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

// --- Audit trail -------------------------------------------------------------------------

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

/** @param {API.Actor} actor */
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
  const entries = Object.entries(all).filter(
    ([key]) => !key.endsWith("seat_id") && !((grants || pairAtTop) && (key === "before" || key === "after")),
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

function actorText(actor) {
  return actor.kind === "person" ? (actor.id ?? "") : t(`actor.${actor.kind}`);
}

/**
 * An audit trail: the organization's, or one user's.
 * @param {string} org
 * @param {string | null} user
 */
function auditSection(org, user) {
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
    for (const entry of page.entries) {
      addRow([
        dateTime(entry.at),
        actorText(entry.actor),
        t(`action.${entry.action}`),
        entry.target ? h("a", { href: `#/o/${org}/u/${entry.target}` }, ltr(entry.target)) : "—",
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
async function audit(org) {
  const section = auditSection(org, null);
  show(t("audit.title"), orgNav(org, "audit"), section.element);
  await section.load();
}

// --- Settings ----------------------------------------------------------------------------

/** @param {string} org */
async function settings(org) {
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

// --- A user's page -----------------------------------------------------------------------

/** @param {API.Profile} profile */
function profileFacts(profile) {
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
    h("dd", null, profile.email),
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
async function user(org, id) {
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
      t("user.pending_change", { channel: t(`channel.${channel}`), value: change?.value ?? "", until: dateTime(change?.code_expires_at) }),
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
        h("legend", null, t("user.grants_on", { establishment: `\u2066${establishment}\u2069` })),
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
      h("h2", { id: "suspend-title" }, t("user.suspend_confirm_title", { name: `${nameOf(profile.name)} (\u2066${masked(id)}\u2069)` })),
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

// --- The signed-in person's own account ---------------------------------------------------

/** @param {string} org */
async function me(org) {
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
      field(t("me.contact_code", { channel: t(`channel.${channel}`), value: change?.value ?? "" }), code),
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

// --- The activation link -------------------------------------------------------------------

/** @param {string} token */
function activate(token) {
  const report = outcome();
  const next = h("div", { "aria-live": "polite" });
  const button = actionButton(
    t("activate.confirm"),
    report,
    async () => {
      const state = await API.confirmEmail(api, { body: { token } });
      button.hidden = true;
      next.replaceChildren(
        h("p", null, t(state.status === "active" ? "activate.active" : "activate.next")),
        h("p", null, h("a", { href: `#/o/${state.organization_id}/me`, class: "button" }, t("activate.continue"))),
      );
      return t("activate.confirmed");
    },
    { class: "primary" },
  );
  show(t("activate.title"), h("p", null, t("activate.intro")), button, report.element, next);
}

// --- The operator's tools -----------------------------------------------------------------

function operator() {
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
        h("h3", null, `${organization.name} (${organization.id})`),
        h("p", null, t(`plan.${organization.pricing_plan}`), " · ", t("operator.manager", { id: organization.manager_id })),
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
      return t("operator.created", { name: created.name, id: created.id });
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
      return t("operator.person_saved", { id: saved.id });
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

// --- Routing -------------------------------------------------------------------------------

/**
 * The screens, by address: a pattern of the hash's parts (`:name` takes one part) and the
 * screen it draws. The first that matches wins.
 * @type {Array<[string, (params: Record<string, string>) => Promise<void> | void]>}
 */
const ROUTES = [
  ["", () => home()],
  ["operator", () => operator()],
  ["o/:org", ({ org }) => users(org)],
  ["o/:org/add", ({ org }) => add(org)],
  ["o/:org/balance", ({ org }) => balance(org)],
  ["o/:org/audit", ({ org }) => audit(org)],
  ["o/:org/settings", ({ org }) => settings(org)],
  ["o/:org/me", ({ org }) => me(org)],
  ["o/:org/u/:id", ({ org, id }) => user(org, id)],
];

/**
 * The route a hash's parts match, with its parameters.
 * @param {string[]} parts
 */
function matchRoute(parts) {
  for (const [pattern, screen] of ROUTES) {
    const wanted = pattern.split("/").filter(Boolean);
    if (wanted.length !== parts.length) continue;
    /** @type {Record<string, string>} */
    const params = {};
    if (wanted.every((part, n) => (part.startsWith(":") ? ((params[part.slice(1)] = parts[n]), true) : part === parts[n]))) {
      return () => screen(params);
    }
  }
  return null;
}

async function route() {
  loading();
  header();
  // The activation email links to /activate#token=…, a page open to anyone.
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (location.pathname === "/activate" && token) return activate(token);
  const hash = location.hash || "#/";
  const parts = hash.replace(/^#\/?/, "").split("?")[0].split("/").filter(Boolean);
  if (parts[0] === "sign-in") return signIn();
  if (!session.current()) {
    session.remember(hash);
    return go("#/sign-in");
  }
  try {
    const screen = matchRoute(parts);
    if (screen) return await screen();
    show(t("error.no_page"), h("p", null, h("a", { href: "#/" }, t("nav.home"))));
  } catch (error) {
    failed(error);
  }
}

async function start() {
  config = await session.config();
  api.base = config.api.replace(/\/$/, "");
  await i18n.use(i18n.preferred());
  if (config.auth.mode === "oidc") {
    try {
      const back = await session.oidcCallback(config.auth);
      if (back) location.hash = back;
    } catch (error) {
      return failed(error);
    }
  }
  window.addEventListener("hashchange", route);
  await route();
}

start();
