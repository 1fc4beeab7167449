// @ts-check
// A few helpers to build the screens from plain DOM: no framework, no build step.

import { ApiError } from "./http.js";
import { current, date, has, money, t } from "./i18n.js";

/**
 * An element: `h("button", { type: "submit", onclick }, "Save")`. Attributes starting with
 * `on` are listeners; `false`/`null`/`undefined` attributes are left out.
 * @param {string} tag
 * @param {Record<string, any> | null} [attributes]
 * @param {...(Node | string | number | null | undefined | false | Array<Node | string | null | undefined | false>)} children
 * @returns {HTMLElement}
 */
export function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === "number" ? String(child) : child);
  }
  return element;
}

/** Text written left to right whatever the page's direction (IDs, establishment numbers). @param {string} text */
export function ltr(text) {
  return h("bdi", { class: "ltr", dir: "ltr" }, text);
}

/**
 * Text kept in its own order inside a sentence of either direction, for places that take
 * text rather than elements (messages, labels, options): Unicode isolates, left to right
 * for IDs, numbers, mobiles and addresses, by its first strong letter for names.
 * @param {string} text @param {"ltr" | "auto"} [direction]
 */
export function isolate(text, direction = "ltr") {
  return `${direction === "ltr" ? "\u2066" : "\u2068"}${text}\u2069`;
}

/** A list of establishment numbers. @param {string[]} list */
export function establishmentList(list) {
  if (!list.length) return "—";
  const items = /** @type {Array<Node | string>} */ ([]);
  list.forEach((id, n) => {
    if (n > 0) items.push(current() === "ar" ? "، " : ", ");
    items.push(ltr(id));
  });
  return h("span", null, items);
}

let ids = 0;
/** A fresh element id. @param {string} prefix */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/**
 * A labelled control; `hint` is read with it.
 * @param {string} label
 * @param {HTMLElement} control
 * @param {string} [hint]
 */
export function field(label, control, hint) {
  const id = control.id || uid("field");
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("p", { class: "hint", id: hintId }, hint) : null);
}

/**
 * A table with a caption and column headers.
 * @param {string} caption
 * @param {string[]} headers
 * @param {Array<Array<Node | string>>} rows
 */
export function table(caption, headers, rows) {
  const { element, add } = growingTable(caption, headers);
  for (const cells of rows) add(cells);
  return element;
}

/**
 * A table whose rows come later (a listing's pages): the element, and `add(cells)` to
 * append a row. Explicit roles: on a phone the table is laid out as blocks (styles.css),
 * which would otherwise take its table semantics away from screen readers; each cell is
 * labelled by its column there (`data-label`).
 * @param {string} caption
 * @param {string[]} headers
 */
export function growingTable(caption, headers) {
  const body = h("tbody", { role: "rowgroup" });
  const element = h(
    "table",
    { role: "table" },
    h("caption", null, caption),
    h(
      "thead",
      { role: "rowgroup" },
      h(
        "tr",
        { role: "row" },
        headers.map((header) => h("th", { scope: "col", role: "columnheader" }, header)),
      ),
    ),
    body,
  );
  /** @param {Array<Node | string>} cells */
  const add = (cells) =>
    body.append(
      h(
        "tr",
        { role: "row" },
        cells.map((cell, n) => h("td", { role: "cell", "data-label": headers[n] ?? "" }, cell)),
      ),
    );
  return { element, add, clear: () => body.replaceChildren() };
}

/** The sentence for a refusal or failure, in the reader's language. @param {unknown} error */
export function errorText(error) {
  if (error instanceof ApiError) {
    /** @type {Record<string, string | number>} */
    const values = {};
    for (const [name, value] of Object.entries(error.details)) {
      if (name.endsWith("_halalas") && typeof value === "number") values[name] = money(value);
      else if (name.endsWith("_until") && typeof value === "string") values[name] = date(value);
      else if (Array.isArray(value)) values[name] = value.join(current() === "ar" ? "، " : ", ");
      else if (typeof value === "string" || typeof value === "number") values[name] = value;
    }
    if (typeof error.details.field === "string") values.field = fieldName(error.details.field);
    const key = `error.${error.code}`;
    return has(key) ? t(key, values) : t("error.unknown", { status: error.status });
  }
  return t("error.unexpected");
}

/** A request field's name as the reader knows it. @param {string} field */
function fieldName(field) {
  const key = `field.${field.replace(/\[\d+\]/g, "").replace(/\./g, "_")}`;
  return has(key) ? t(key) : field;
}

/**
 * A region where the outcome of an action is announced (`role="status"`, or `alert` for a
 * refusal), and focused so that keyboard and screen-reader users hear it.
 */
export function outcome() {
  const region = h("div", { class: "outcome", "aria-live": "polite", tabindex: "-1" });
  /** Fields marked by the last refusal (cleared with it). @type {Element[]} */
  let marked = [];
  const unmark = () => {
    for (const element of marked) {
      const note = `${element.id}-error`;
      element.removeAttribute("aria-invalid");
      const described = (element.getAttribute("aria-describedby") ?? "").split(" ").filter((id) => id && id !== note);
      if (described.length) element.setAttribute("aria-describedby", described.join(" "));
      else element.removeAttribute("aria-describedby");
      document.getElementById(note)?.remove();
    }
    marked = [];
  };
  return {
    element: region,
    /** @param {string} text */
    ok(text) {
      unmark();
      region.className = "outcome ok";
      region.setAttribute("role", "status");
      region.replaceChildren(text);
      region.focus();
    },
    /**
     * Shows a refusal. When it names a field (`persons[1].id`) that `locate` finds on the
     * screen, the field is marked with the message beside it, and the summary links to it.
     * @param {unknown} error
     * @param {Locate} [locate]
     */
    fail(error, locate) {
      unmark();
      region.className = "outcome error";
      region.setAttribute("role", "alert");
      const reference =
        error instanceof ApiError && error.requestId ? h("small", null, ` ${t("error.reference", { id: error.requestId })}`) : null;
      const path = error instanceof ApiError && typeof error.details.field === "string" ? error.details.field : null;
      const place = path && locate ? locate(path) : null;
      if (place) {
        const { element, label } = place;
        if (!element.id) element.id = `field-${(path ?? "").replace(/[^A-Za-z0-9]+/g, "-")}`;
        const note = h("p", { class: "field-error", id: `${element.id}-error` }, errorText(error));
        element.setAttribute("aria-invalid", "true");
        // The message is read with the field (aria-describedby is what screen readers support).
        element.setAttribute("aria-describedby", [note.id, element.getAttribute("aria-describedby")].filter(Boolean).join(" "));
        (element.closest(".field") ?? element).after(note);
        marked.push(element);
        const link = h(
          "a",
          {
            href: `#${element.id}`,
            onclick: (/** @type {MouseEvent} */ event) => {
              event.preventDefault();
              /** @type {HTMLElement} */ (element).focus();
            },
          },
          `${label}: ${errorText(error)}`,
        );
        region.replaceChildren(
          h("h2", { class: "summary-title" }, t("error.summary")),
          h("ul", null, h("li", null, link)),
          reference ?? "",
        );
      } else {
        region.replaceChildren(errorText(error), reference ?? "");
      }
      region.focus();
    },
    clear() {
      unmark();
      region.className = "outcome";
      region.removeAttribute("role");
      region.replaceChildren();
    },
    /** Work under way (shown after `BUSY_AFTER_MS`). */
    busy() {
      region.className = "outcome busy";
      region.setAttribute("role", "status");
      region.replaceChildren(h("span", { class: "spinner", "aria-hidden": "true" }), t("app.working"));
    },
    /** The work ended with nothing to say (its result is drawn elsewhere). */
    idle() {
      if (region.classList.contains("busy")) this.clear();
    },
  };
}

/**
 * Finds the field a refusal names (`persons[1].id`) on the screen: the element to mark and
 * focus, and how to name it in the summary ("Person 2 · ID number").
 * @typedef {(path: string) => { element: HTMLElement, label: string } | null} Locate
 */

/**
 * Runs an action from a button or form: disables it while it runs, reports the outcome.
 * @param {HTMLButtonElement | HTMLFormElement} trigger
 * @param {ReturnType<typeof outcome>} report
 * @param {() => Promise<string | void>} work resolves to the success message, if any
 * @param {Locate} [locate] finds the field a refusal names
 */
export async function act(trigger, report, work, locate) {
  const buttons = trigger instanceof HTMLFormElement ? [...trigger.querySelectorAll("button")] : [trigger];
  buttons.forEach((button) => (button.disabled = true));
  report.clear();
  // An answer slower than 300 ms shows that work is under way, where the result will be.
  const slow = setTimeout(() => {
    trigger.setAttribute("aria-busy", "true");
    report.busy();
  }, BUSY_AFTER_MS);
  try {
    const message = await work();
    clearTimeout(slow);
    if (message) report.ok(message);
    else report.idle();
  } catch (error) {
    clearTimeout(slow);
    report.fail(error, locate);
  } finally {
    trigger.removeAttribute("aria-busy");
    buttons.forEach((button) => (button.disabled = false));
  }
}

/** How long an answer may take before the console shows that it is working on it. */
export const BUSY_AFTER_MS = 300;

/**
 * A form whose submission runs `work` (see `act`).
 * @param {ReturnType<typeof outcome>} report
 * @param {() => Promise<string | void>} work
 * @param {Record<string, any> | null} attributes
 * @param {...(Node | string | null | undefined | false | Array<Node | string | null | undefined | false>)} children
 */
export function actionForm(report, work, attributes, ...children) {
  const element = /** @type {HTMLFormElement} */ (h("form", attributes, ...children));
  element.addEventListener("submit", (event) => {
    event.preventDefault();
    act(element, report, work);
  });
  return element;
}

/**
 * A button that runs `work` (see `act`).
 * @param {string} label
 * @param {ReturnType<typeof outcome>} report
 * @param {() => Promise<string | void>} work
 * @param {Record<string, any>} [attributes]
 */
export function actionButton(label, report, work, attributes = {}) {
  const element = /** @type {HTMLButtonElement} */ (h("button", { type: "button", ...attributes }, label));
  element.addEventListener("click", () => act(element, report, work));
  return element;
}

/** Saves a downloaded file. @param {Blob} blob @param {string} fileName */
export function save(blob, fileName) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: fileName });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** A random key for a request that must not be charged twice. */
export function idempotencyKey() {
  return `console-${crypto.randomUUID()}`;
}
