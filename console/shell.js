// @ts-check
// The frame every screen is drawn in: the API client, the header, the organization's tabs,
// showing a screen (title focused, the last action's result, a kept draft restored), the
// busy state while one is fetched, and the small pieces of text screens share.

import { BUSY_AFTER_MS, errorText, h, isolate } from "./dom.js";
import { Api } from "./http.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import * as session from "./session.js";

/** What the console was deployed with (`config.json`), read once at start. @type {session.Config} */
export let config;

/** Reads the deployment's configuration and points the API client at its API. */
export async function configure() {
  config = await session.config();
  api.base = config.api.replace(/\/$/, "");
}

/** Draws the screen of the current address (the router, set by app.js). @type {() => Promise<void>} */
let router = async () => {};

/** @param {() => Promise<void>} draw */
export function setRouter(draw) {
  router = draw;
}

/** Draws the current address's screen again. */
function route() {
  return router();
}
export const api = new Api(
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
export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/**
 * The name in the reader's language, else in the other; nothing when none is known.
 * @param {{ ar?: string | null, en?: string | null } | null | undefined} name
 */
function preferredName(name) {
  return (i18n.current() === "ar" ? (name?.ar ?? name?.en) : (name?.en ?? name?.ar)) ?? null;
}

/** The name in the reader's language. @param {{ ar?: string | null, en?: string | null } | undefined} name */
export function nameOf(name) {
  return preferredName(name) ?? "—";
}

/**
 * A person's name as the registry takes it: in Arabic, in English, or both (an empty one is
 * left for the server to refuse by name).
 * @param {string} ar @param {string} en
 */
export function personName(ar, en) {
  return ar ? { ar, en: en || null } : { en, ar: null };
}

/** @param {string} status */
export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, t(`status.${status}`));
}

/** What the last action did, shown once on the screen drawn after it. @type {string | null} */
let flash = null;

/** Draws the screen again, saying what was just done. @param {string} message */
export function refresh(message) {
  flash = message;
  route();
}

/** Shows a screen: its title first, focused, so that a reader starts at the top. */
export function show(title, ...content) {
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
export function loading() {
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
export function failed(error) {
  show(
    t("error.title"),
    h("p", { role: "alert", class: "outcome error" }, errorText(error)),
    h("p", null, h("a", { href: "#/" }, t("nav.home"))),
  );
}

/**
 * A person as people say it: the name in the reader's language with the ID masked beside
 * it, the whole ID when no name is known. Text, each part isolated (U+2068/U+2066 … U+2069),
 * so that it keeps its order inside a sentence of either direction.
 * @param {string} id @param {{ ar?: string | null, en?: string | null } | null | undefined} name
 */
export function personText(id, name) {
  const known = preferredName(name);
  return known ? `${isolate(known, "auto")} (${isolate(masked(id))})` : isolate(id);
}

/** Who acted: a person by name (see `personText`), anyone else by role. @param {import("./api.js").Actor} actor @param {import("./api.js").People} people */
export function actorText(actor, people) {
  return actor.kind === "person" && actor.id ? personText(actor.id, people[actor.id]) : t(`actor.${actor.kind}`);
}

/** Who is signed in: their name and masked ID (an operator by the token's subject). @param {session.Session} signedIn */
function who(signedIn) {
  return personText(signedIn.subject, signedIn.name);
}

/** An ID number with all but its last four digits hidden. @param {string} id */
function masked(id) {
  return /^\d{10}$/.test(id) ? `••••••${id.slice(-4)}` : id;
}

export function header() {
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
export function orgNav(org, here) {
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
