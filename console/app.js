// @ts-check
// The console's router: the screens (screens/) by address, over the public API. Hash routes:
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

import { h } from "./dom.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import * as session from "./session.js";
import { config, configure, failed, go, header, loading, setRouter, show } from "./shell.js";
import { home, signIn } from "./screens/signin.js";
import { users } from "./screens/users.js";
import { add } from "./screens/add.js";
import { balance } from "./screens/balance.js";
import { audit } from "./screens/audit.js";
import { settings } from "./screens/settings.js";
import { user } from "./screens/user.js";
import { me } from "./screens/me.js";
import { activate } from "./screens/activate.js";
import { operator } from "./screens/operator.js";

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
  if (location.pathname === "/activate") return activate(token);
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
  await configure();
  await i18n.use(i18n.preferred());
  if (config.auth.mode === "oidc") {
    try {
      const back = await session.oidcCallback(config.auth);
      if (back) location.hash = back;
    } catch (error) {
      return failed(error);
    }
  }
  setRouter(route);
  window.addEventListener("hashchange", route);
  await route();
}

start();
