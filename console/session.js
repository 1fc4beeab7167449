// @ts-check
// Who is signed in. In production the console signs in with the platform's OpenID Connect
// provider (authorization code with PKCE) and sends the API the same JWT its authorizer
// accepts; on the local server a sign-in page lists the demo people and the server mints
// their tokens. `config.json`, next to the console, says which and where the API is.

/**
 * @typedef {{ api: string, auth: { mode: "local" } | { mode: "oidc", issuer: string, client_id: string,
 *   scope?: string, token?: "id_token" | "access_token" } }} Config
 * @typedef {{ token: string, subject: string, role: string | null, expires: number, name?: { en?: string, ar?: string } }} Session
 */

const KEY = "console.session";

/** @returns {Promise<Config>} */
export async function config() {
  const response = await fetch("/config.json", { cache: "no-store" });
  return response.json();
}

/** The claims of a JWT (not verified here: the API verifies it). @param {string} token */
export function claims(token) {
  const payload = token.split(".")[1] ?? "";
  const json = atob(
    payload
      .replace(/-/g, "+")
      .replace(/_/g, "/")
      .padEnd(Math.ceil(payload.length / 4) * 4, "="),
  );
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
}

/** @param {string} token @returns {Session} */
function sessionOf(token) {
  const { sub, role, exp, name } = claims(token);
  // The provider's `name` claim, when it sends one: the header greets people by name.
  const named = typeof name === "string" && name ? { en: name, ar: name } : undefined;
  return { token, subject: String(sub), role: typeof role === "string" ? role : null, expires: Number(exp) * 1000, name: named };
}

/** @returns {Session | null} */
export function current() {
  const kept = sessionStorage.getItem(KEY);
  if (!kept) return null;
  const session = /** @type {Session} */ (JSON.parse(kept));
  if (session.expires <= Date.now()) {
    sessionStorage.removeItem(KEY);
    return null;
  }
  return session;
}

/** @param {string} token @param {{ en?: string, ar?: string }} [name] who it is, when known */
export function start(token, name) {
  const session = sessionOf(token);
  if (name) session.name = name;
  sessionStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

export function end() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(AFTER);
}

const AFTER = "console.after_sign_in";
const ENDED = "console.session_ended";
const DRAFT = "console.draft";

/**
 * The session ended under the reader (the API answered 401): remembers the screen and what
 * was typed on it, so that signing in again returns there with the draft.
 * @param {string} hash
 * @param {Draft} draft
 */
export function expire(hash, draft) {
  sessionStorage.removeItem(KEY);
  remember(hash);
  sessionStorage.setItem(ENDED, "1");
  sessionStorage.setItem(DRAFT, JSON.stringify({ hash, draft }));
}

/** Whether the last session ended under the reader (asked once). */
export function endedUnderReader() {
  const ended = sessionStorage.getItem(ENDED) === "1";
  sessionStorage.removeItem(ENDED);
  return ended;
}

/**
 * What was typed on a screen: its fields in order, with how many person rows it had.
 * @typedef {{ rows: number, fields: Array<{ name: string, value: string, checked: boolean }> }} Draft
 */

/** The draft kept for `hash`, once (it is forgotten when taken). @param {string} hash @returns {Draft | null} */
export function takeDraft(hash) {
  const kept = JSON.parse(sessionStorage.getItem(DRAFT) ?? "null");
  if (!kept || kept.hash !== hash) return null;
  sessionStorage.removeItem(DRAFT);
  return kept.draft;
}

/** Remembers where a reader was going when they had to sign in first. @param {string} hash */
export function remember(hash) {
  if (hash && hash !== "#/" && !hash.startsWith("#/sign-in")) sessionStorage.setItem(AFTER, hash);
}

/** Where to go once signed in, if a page asked for it (and forgets it). */
export function takeRemembered() {
  const hash = sessionStorage.getItem(AFTER);
  sessionStorage.removeItem(AFTER);
  return hash;
}

// --- The local server's sign-in -----------------------------------------------------

/** @typedef {{ subject: string, role: string | null, name: { en: string, ar: string }, note: { en: string, ar: string }, organization: string | null }} Identity */

/** @returns {Promise<Identity[]>} */
export async function localIdentities() {
  const response = await fetch("/local/identities");
  return (await response.json()).identities;
}

/** @param {string} subject @param {{ en?: string, ar?: string }} [name] */
export async function localSignIn(subject, name) {
  const response = await fetch("/local/sign-in", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ subject }),
  });
  if (!response.ok) throw new Error(`sign-in refused: ${response.status}`);
  return start((await response.json()).token, name);
}

// --- OpenID Connect, authorization code with PKCE (RFC 7636) ---------------------------

/** base64url without padding. @param {Uint8Array} bytes */
export function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

/** The S256 challenge of a verifier. @param {string} verifier */
export async function challenge(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** @param {string} issuer */
async function discovery(issuer) {
  const response = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  return response.json();
}

function redirectUri() {
  return `${location.origin}/`;
}

/**
 * The `nonce` claim of an ID token (its signature is the API's to check; the nonce is ours).
 * @param {unknown} token
 */
function idTokenNonce(token) {
  if (typeof token !== "string") return undefined;
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "="))).nonce;
  } catch {
    return undefined;
  }
}

/** Sends the browser to the provider. @param {Extract<Config["auth"], { mode: "oidc" }>} auth */
export async function oidcSignIn(auth) {
  const provider = await discovery(auth.issuer);
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  // Binds the ID token to this sign-in: a token replayed from another one carries another.
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem("console.pkce", JSON.stringify({ verifier, state, nonce, back: takeRemembered() ?? "#/" }));
  const url = new URL(provider.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: auth.client_id,
    redirect_uri: redirectUri(),
    scope: auth.scope ?? "openid",
    state,
    nonce,
    code_challenge: await challenge(verifier),
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

/**
 * On the way back from the provider (`?code=…&state=…`): exchanges the code for tokens and
 * starts the session. Returns the route to go back to, or null if this is not a callback.
 * @param {Extract<Config["auth"], { mode: "oidc" }>} auth
 */
export async function oidcCallback(auth) {
  const query = new URLSearchParams(location.search);
  const code = query.get("code");
  if (!code) return null;
  const kept = JSON.parse(sessionStorage.getItem("console.pkce") ?? "{}");
  sessionStorage.removeItem("console.pkce");
  history.replaceState(null, "", location.pathname);
  if (!kept.state || kept.state !== query.get("state")) throw new Error("the sign-in did not come back from the request we made");
  const provider = await discovery(auth.issuer);
  const response = await fetch(provider.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri(),
      client_id: auth.client_id,
      code_verifier: kept.verifier,
    }),
  });
  if (!response.ok) throw new Error(`the provider refused the code: ${response.status}`);
  const tokens = await response.json();
  if (!kept.nonce || idTokenNonce(tokens.id_token) !== kept.nonce) throw new Error("the ID token was not issued for this sign-in (nonce)");
  start(tokens[auth.token ?? "id_token"]);
  return kept.back || "#/";
}
