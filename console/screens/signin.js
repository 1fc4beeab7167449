// @ts-check
// Signing in (the local identities or the identity provider) and the home screen.

import { act, field, h, outcome } from "../dom.js";
import * as i18n from "../i18n.js";
import { t } from "../i18n.js";
import * as session from "../session.js";
import { config, go, header, nameOf, show } from "../shell.js";

export async function signIn() {
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

export function home() {
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
