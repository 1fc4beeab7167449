// @ts-check
// Every string the console shows comes from `i18n/<language>.json`. Arabic (right to left)
// is the default; the choice is kept in the browser. Dates are shown in Saudi time, amounts
// in riyals from the API's halalas.

/** @typedef {"ar" | "en"} Language */

/** @type {Record<string, string>} */
let messages = {};
/** @type {Language} */
let language = "ar";

/** @returns {Language} */
export function current() {
  return language;
}

/** @param {Language} wanted */
export async function use(wanted) {
  const response = await fetch(`/console/i18n/${wanted}.json`);
  messages = await response.json();
  language = wanted;
  localStorage.setItem("console.language", wanted);
  document.documentElement.lang = wanted;
  document.documentElement.dir = wanted === "ar" ? "rtl" : "ltr";
}

/** @returns {Language} */
export function preferred() {
  const kept = localStorage.getItem("console.language");
  return kept === "en" || kept === "ar" ? kept : "ar";
}

/**
 * The message `key`, with `{name}` placeholders filled from `values`. An unknown key shows
 * itself, so a missing string is visible (a test holds that none is missing).
 * @param {string} key
 * @param {Record<string, string | number>} [values]
 */
export function t(key, values = {}) {
  const template = messages[key];
  if (template === undefined) return key;
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

/** Whether a message exists (for error codes the console may not know). @param {string} key */
export function has(key) {
  return key in messages;
}

const RIYADH = "Asia/Riyadh";

/**
 * One digit system on every screen: Western digits in both languages (IDs, mobiles and
 * establishment numbers are written with them, and people type them so), the Gregorian
 * calendar (seats run by it), Saudi time.
 */
function locale() {
  return language === "ar" ? "ar-SA-u-ca-gregory-nu-latn" : "en-GB";
}

/** An instant, in Saudi time. @param {string | undefined | null} iso */
export function dateTime(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(locale(), { timeZone: RIYADH, dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
}

/** The Saudi day of an instant, or a calendar date as given. @param {string | undefined | null} iso */
export function date(iso) {
  if (!iso) return "—";
  const value = /^\d{4}-\d{2}-\d{2}$/.test(iso) ? new Date(`${iso}T12:00:00+03:00`) : new Date(iso);
  return new Intl.DateTimeFormat(locale(), { timeZone: RIYADH, dateStyle: "medium" }).format(value);
}

/** Halalas as riyals. @param {number | undefined | null} halalas */
export function money(halalas) {
  if (halalas === undefined || halalas === null) return "—";
  // In Arabic the currency's name ("150.00 ريال سعودي"): its abbreviation ends in a full
  // stop, which doubled with the sentence's ("ر.س..").
  const display = language === "ar" ? "name" : "code";
  return new Intl.NumberFormat(locale(), { style: "currency", currency: "SAR", currencyDisplay: display }).format(halalas / 100);
}
