// @ts-check
// The console's only way to the API: `fetch` with the signed-in person's bearer token.
// `api.js` (generated from openapi.yaml) calls `call` and `download` with an operation's
// method, path template and request ({ path, query, headers, body }).

/** A refusal or failure of the API: its status, its stable `code`, and the details it gave. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {Record<string, unknown>} details
   * @param {string | null} requestId
   */
  constructor(status, code, message, details, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.requestId = requestId;
  }
}

/**
 * @typedef {{ path?: Record<string, string>, query?: Record<string, string | number | ReadonlyArray<string> | undefined | null>,
 *   headers?: Record<string, string | undefined>, body?: unknown }} Request
 */

export class Api {
  /**
   * @param {string} base the API's origin and base path ("" for the server the console came from)
   * @param {() => string | null} token the bearer token, if signed in
   * @param {() => void} onUnauthenticated called when the API answers 401
   */
  constructor(base, token, onUnauthenticated) {
    this.base = base.replace(/\/$/, "");
    this.token = token;
    this.onUnauthenticated = onUnauthenticated;
  }

  /**
   * @param {string} template e.g. "/v1/organizations/{org}/users"
   * @param {Request} request
   */
  url(template, request) {
    const path = template.replace(/\{(\w+)\}/g, (_, name) => {
      const value = request.path?.[name];
      if (value === undefined) throw new Error(`missing path parameter ${name}`);
      return encodeURIComponent(value);
    });
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(request.query ?? {})) {
      // Arrays as openapi.yaml writes them (style form, explode false): one parameter, commas.
      const text = Array.isArray(value) ? value.join(",") : value;
      if (text !== undefined && text !== null && text !== "") query.set(name, String(text));
    }
    const search = query.toString();
    return `${this.base}${path}${search ? `?${search}` : ""}`;
  }

  /**
   * @param {string} method
   * @param {string} template
   * @param {Request} request
   * @param {string} accept
   */
  async send(method, template, request, accept) {
    /** @type {Record<string, string>} */
    const headers = { Accept: accept };
    const token = this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    for (const [name, value] of Object.entries(request.headers ?? {})) {
      if (value !== undefined) headers[name] = value;
    }
    /** @type {RequestInit} */
    const init = { method, headers };
    if (request.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(request.body);
    }
    let response;
    try {
      response = await fetch(this.url(template, request), init);
    } catch {
      throw new ApiError(0, "network", "the API could not be reached", {}, null);
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        // Not JSON (a gateway's own page): the status says enough.
      }
      const error = body?.error ?? {};
      const { code = response.status >= 500 ? "internal" : "unknown", message = response.statusText, ...details } = error;
      if (response.status === 401) this.onUnauthenticated();
      const retryAfter = response.headers.get("retry-after");
      if (retryAfter) details.retry_after_seconds = Number(retryAfter);
      throw new ApiError(response.status, code, message, details, body?.request_id ?? null);
    }
    return response;
  }

  /**
   * @param {string} method
   * @param {string} template
   * @param {Request} request
   * @returns {Promise<any>}
   */
  async call(method, template, request = {}) {
    const response = await this.send(method, template, request, "application/json");
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  /**
   * A CSV export: the file, its name from `Content-Disposition`, and the cursor of the next
   * part if the export continues.
   * @param {string} method
   * @param {string} template
   * @param {Request} request
   */
  async download(method, template, request = {}) {
    const response = await this.send(method, template, request, "text/csv");
    const disposition = response.headers.get("content-disposition") ?? "";
    const fileName = /filename="([^"]+)"/.exec(disposition)?.[1] ?? "export.csv";
    return { blob: await response.blob(), fileName, nextCursor: response.headers.get("next-cursor") };
  }
}
