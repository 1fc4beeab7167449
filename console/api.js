// @ts-check
// Generated from openapi.yaml by tests/suite/console.rs; do not edit. Regenerate with
// `UPDATE_CONSOLE_CLIENT=1 cargo test -p system-tests --test suite console::`.

/** @typedef {import("./http.js").Api} Api */

/** @typedef {{ error: { code: string, message: string, field?: string }, request_id?: string }} ErrorBody */
/** @typedef {string} OrganizationId */
/** @typedef {string} PersonId */
/** @typedef {string} EstablishmentId */
/** @typedef {string} Code */
/** @typedef {string} ActivationToken */
/** @typedef {string} Email */
/** @typedef {string} Mobile */
/** @typedef {string} Nationality */
/** @typedef {number} Version */
/** @typedef {string} Text100 */
/** @typedef {string} Text200 */
/** @typedef {string} Text500 */
/** @typedef {"organization.onboarded" | "organization.settings_changed" | "registry.person_saved" | "balance.credited" | "user.subscribed" | "activation.email_confirmed" | "activation.mobile_confirmed" | "activation.mobile_code_rejected" | "activation.resent" | "message.resent" | "message.undelivered" | "permissions.changed" | "user.modified" | "user.iqama_updated" | "contact.change_confirmed" | "contact.code_rejected" | "contact.change_cancelled" | "user.suspended" | "seat.renewed" | "seat.reminder_queued" | "seat.expired" | "audit.exported" | "ledger.exported"} AuditAction */
/** @typedef {string} Timestamp */
/** @typedef {number} Halalas */
/** @typedef {"pending_activation" | "active" | "suspended" | "expired"} UserStatus */
/** @typedef {"residents_and_partners" | "partners_only"} UserType */
/** @typedef {"queued" | "not_needed"} Delivery */
/** @typedef {{ state: "queued" | "sent" | "failed" | "undeliverable" | "superseded", message_id?: string, reason?: string, attempts: number, updated_at: Timestamp }} MessageState */
/** @typedef {{ ar?: string, en?: string }} Name */
/** @typedef {Record<string, Name>} People */
/** @typedef {{ id: string, name: string, size: "micro" | "small" | "medium" | "large" | "giant" }} Establishment */
/** @typedef {{ unified_number: OrganizationId, name: Text200, pricing_plan: "muqeem" | "qiwa", manager_id: PersonId, establishments: Array<{ id: EstablishmentId, name: Text200, size: "micro" | "small" | "medium" | "large" | "giant" }> }} CreateOrganization */
/** @typedef {{ id: string, name: string, pricing_plan: "muqeem" | "qiwa", manager_id: string, establishments: Array<Establishment>, settings: { employee_self_subscription: boolean }, created_at: Timestamp, version: number }} Organization */
/** @typedef {{ name: { ar?: Text200 | null, en?: Text200 | null } & ({ ar: string } | { en: string }), nationality: Nationality, iqama_expiry?: string | null, employers?: Array<EstablishmentId>, email: Email, mobile: Mobile }} SavePerson */
/** @typedef {{ id: string, name: Name, nationality: string, iqama_expiry?: string, employers: Array<string>, email: string, mobile: string, updated_at: Timestamp }} Person */
/** @typedef {{ organization_id: string, payment_reference: string, credited_halalas: Halalas, balance_halalas: Halalas, ledger_entry_id: string, credited_at: Timestamp }} CreditReceipt */
/** @typedef {{ kind: "person" | "operator" | "service" | "system", id?: string }} Actor */
/** @typedef {{ organization: string, id: string, sequence: number, at: Timestamp, direction: "credit" | "debit", amount: Halalas, balance_after: Halalas, reason: { kind: "credit" | "seat", payment_reference?: string, seat_id?: string, person?: string, purchase?: "subscription" | "renewal" }, actor: Actor, request_id: string }} LedgerEntry */
/** @typedef {{ organization_id: string, available_halalas: Halalas, total_credited_halalas: Halalas, total_debited_halalas: Halalas, seats_sold: number, ledger: Array<LedgerEntry>, people: People, next_cursor?: string }} Balance */
/** @typedef {{ persons: Array<{ id: PersonId, establishments: Array<EstablishmentId>, user_type?: UserType, language?: "ar" | "en", job_title?: Text100 }>, expected_total_halalas?: number }} SubscriptionRequest */
/** @typedef {{ organization_id: string, persons: Array<{ id: string, price_halalas: Halalas, free: boolean }>, total_halalas: Halalas, balance_halalas: Halalas, sufficient: boolean, seat_ends_at: Timestamp }} Quote */
/** @typedef {{ id: string, starts_at: Timestamp, ends_at: Timestamp, price_halalas: Halalas }} Seat */
/** @typedef {{ email: Delivery, sms: Delivery }} Deliveries */
/** @typedef {{ organization_id: string, users: Array<{ id: string, status: UserStatus, establishments: Array<string>, user_type?: UserType, seat: Seat, activation_messages: Deliveries }>, amount_charged_halalas: Halalas, balance_after_halalas: Halalas, seat_ends_at: Timestamp }} SubscriptionReceipt */
/** @typedef {{ organization_id: string, user_id: string, price_halalas: Halalas, starts_at: Timestamp, ends_at: Timestamp, balance_halalas: Halalas, sufficient: boolean }} RenewalQuote */
/** @typedef {{ organization_id: string, user_id: string, status: UserStatus, seat: Seat, next_seat?: Seat, renewed: Seat, amount_charged_halalas: Halalas, balance_after_halalas: Halalas }} RenewalReceipt */
/** @typedef {{ organization_id: string, status: UserStatus, email_confirmed: boolean, mobile_confirmed: boolean }} ActivationState */
/** @typedef {{ version: string, services: Array<{ code: string, platform: "muqeem" | "qiwa" | "both", saudi_only: boolean, name: { en: string, ar: string } }> }} Catalog */
/** @typedef {Record<string, Array<string>>} GrantMatrix */
/** @typedef {{ organization_id: string, user_id: string, version: number, establishments: Array<string>, grants: GrantMatrix }} Permissions */
/** @typedef {{ email: boolean, sms: boolean }} Channels */
/** @typedef {{ expiry_reminders: Channels, account_notices: Channels }} NotificationSettings */
/** @typedef {{ value: string, code_expires_at: Timestamp, requested_at: Timestamp }} Pending */
/** @typedef {{ organization_id: string, id: string, role: "manager" | "member", status: UserStatus, user_type?: UserType, name: Name, email: string, mobile: string, language: "ar" | "en", job_title?: string, notifications: NotificationSettings, establishments: Array<string>, seat?: Seat, next_seat?: Seat, iqama_expiry?: string, activation: { email_confirmed: boolean, mobile_confirmed: boolean }, pending: { email?: Pending, mobile?: Pending }, messages: Record<string, MessageState>, version: number }} Profile */
/** @typedef {{ organization_id: string, user_id: string, status: UserStatus, reason: string, suspended_at: Timestamp, ended_seat_id?: string, notice: Deliveries }} Suspended */
/** @typedef {{ id: string, name: Name, role: "manager" | "member", status: UserStatus, user_type?: UserType, establishments: Array<string>, job_title?: string, seat_ends_at?: Timestamp }} UserSummary */
/** @typedef {{ scope: unknown, id: string, at: Timestamp, actor: Actor, action: string, target?: string, establishments: Array<string>, changes: unknown, request_id: string }} AuditEntry */

/**
 * `DELETE /v1/organizations/{org}/users/{id}/pending-contact-changes/{channel}`: Withdraw a pending
 * contact change.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId, channel: "email" | "mobile" } }} request
 * @returns {Promise<Profile>}
 */
export function cancelPendingContact(api, request) {
  return api.call("DELETE", "/v1/organizations/{org}/users/{id}/pending-contact-changes/{channel}", request);
}

/**
 * `GET /v1/catalog/services`: The service catalog.
 * @param {Api} api
 * @param {{}=} request
 * @returns {Promise<Catalog>}
 */
export function catalog(api, request = {}) {
  return api.call("GET", "/v1/catalog/services", request);
}

/**
 * `PATCH /v1/organizations/{org}/settings`: The manager changes the organization's settings, based
 * on the organization's version. `employee_self_subscription` (on by default): a registered
 * employee may buy their own seat for the establishments that employ them.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId }, body: { version: Version, employee_self_subscription: boolean } }} request
 * @returns {Promise<Organization>}
 */
export function changeSettings(api, request) {
  return api.call("PATCH", "/v1/organizations/{org}/settings", request);
}

/**
 * `POST /v1/authorizations/check`: May this user use this service on this establishment now?
 * (platform services and operators)
 * @param {Api} api
 * @param {{ body: { organization_id: OrganizationId, user_id: PersonId, establishment_id: EstablishmentId, service: string } }} request
 * @returns {Promise<{ allowed: boolean, reason: "granted" | "manager" | "not_subscribed" | "not_active" | "suspended" | "iqama_expired" | "seat_expired" | "unknown_service" | "service_not_on_platform" | "saudi_only" | "no_grant" }>}
 */
export function check(api, request) {
  return api.call("POST", "/v1/authorizations/check", request);
}

/**
 * `POST /v1/organizations/{org}/users/{id}/contact-verifications`: The user confirms a pending
 * email or mobile with the code sent to it.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId }, body: { channel: "email" | "mobile", code: Code } }} request
 * @returns {Promise<Profile>}
 */
export function confirmContact(api, request) {
  return api.call("POST", "/v1/organizations/{org}/users/{id}/contact-verifications", request);
}

/**
 * `POST /v1/activations/email`: Confirm the emailed activation link. No token needed; the link is
 * the proof.
 * @param {Api} api
 * @param {{ body: { token: ActivationToken } }} request
 * @returns {Promise<ActivationState>}
 */
export function confirmEmail(api, request) {
  return api.call("POST", "/v1/activations/email", request);
}

/**
 * `POST /v1/activations/mobile`: Confirm the SMS code (the user).
 * @param {Api} api
 * @param {{ body: { organization_id: OrganizationId, code: Code } }} request
 * @returns {Promise<ActivationState>}
 */
export function confirmMobile(api, request) {
  return api.call("POST", "/v1/activations/mobile", request);
}

/**
 * `POST /v1/organizations`: Onboard an organization (operators only). The manager must be
 * registered.
 * @param {Api} api
 * @param {{ body: CreateOrganization }} request
 * @returns {Promise<Organization>}
 */
export function createOrganization(api, request) {
  return api.call("POST", "/v1/organizations", request);
}

/**
 * `POST /v1/organizations/{org}/balance/credits`: Credit a payment to the balance (operators only).
 * Idempotent by payment reference.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId }, body: { amount_halalas: number, payment_reference: Text100 } }} request
 * @returns {Promise<CreditReceipt>}
 */
export function creditBalance(api, request) {
  return api.call("POST", "/v1/organizations/{org}/balance/credits", request);
}

/**
 * `GET /v1/organizations/{org}/users`: The organization's users in ID order (delegated admins see
 * their establishments' users).
 * @param {Api} api
 * @param {{ path: { org: OrganizationId }, query?: { status?: UserStatus, establishment?: EstablishmentId, q?: Text100, limit?: number, cursor?: string } }} request
 * @returns {Promise<{ users: Array<UserSummary>, next_cursor?: string }>}
 */
export function listUsers(api, request) {
  return api.call("GET", "/v1/organizations/{org}/users", request);
}

/**
 * `PATCH /v1/organizations/{org}/users/{id}`: Change email, mobile (pending until verified), job
 * title, language, notification settings: the version read and at least one of them. ID,
 * nationality, grants, status, role, name, establishments, user type and seat are not changed here
 * (422 `field_not_modifiable` names them).
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId }, body: { version: Version, email?: Email, mobile?: Mobile, job_title?: Text100 | null, language?: "ar" | "en", notifications?: NotificationSettings } }} request
 * @returns {Promise<{ profile: Profile, verification_messages: Deliveries }>}
 */
export function modifyUser(api, request) {
  return api.call("PATCH", "/v1/organizations/{org}/users/{id}", request);
}

/**
 * `GET /v1/organizations/{org}/audit`: The organization's audit trail, newest first. `Accept
 * text/csv` exports it (audited).
 * @param {Api} api
 * @param {{ path: { org: OrganizationId }, query?: { action?: Array<AuditAction>, from?: string, to?: string, limit?: number, cursor?: string, format?: "json" | "csv" } }} request
 * @returns {Promise<{ entries: Array<AuditEntry>, people: People, next_cursor?: string }>}
 */
export function organizationAudit(api, request) {
  return api.call("GET", "/v1/organizations/{org}/audit", request);
}

/**
 * `GET /v1/organizations/{org}/audit` as CSV (`Accept: text/csv`): the file, named by the server.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId }, query?: { action?: Array<AuditAction>, from?: string, to?: string, limit?: number, cursor?: string, format?: "json" | "csv" } }} request
 * @returns {Promise<{ blob: Blob, fileName: string, nextCursor: string | null }>}
 */
export function organizationAuditCsv(api, request) {
  return api.download("GET", "/v1/organizations/{org}/audit", request);
}

/**
 * `POST /v1/organizations/{org}/subscriptions/quote`: Price a subscription without writing
 * anything.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId }, body: SubscriptionRequest }} request
 * @returns {Promise<Quote>}
 */
export function quoteSubscription(api, request) {
  return api.call("POST", "/v1/organizations/{org}/subscriptions/quote", request);
}

/**
 * `GET /v1/organizations/{org}/balance`: The balance and its ledger, newest first (manager or
 * operator). `Accept text/csv` exports the ledger (audited).
 * @param {Api} api
 * @param {{ path: { org: OrganizationId }, query?: { limit?: number, cursor?: string, format?: "json" | "csv" } }} request
 * @returns {Promise<Balance>}
 */
export function readBalance(api, request) {
  return api.call("GET", "/v1/organizations/{org}/balance", request);
}

/**
 * `GET /v1/organizations/{org}/balance` as CSV (`Accept: text/csv`): the file, named by the server.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId }, query?: { limit?: number, cursor?: string, format?: "json" | "csv" } }} request
 * @returns {Promise<{ blob: Blob, fileName: string, nextCursor: string | null }>}
 */
export function readBalanceCsv(api, request) {
  return api.download("GET", "/v1/organizations/{org}/balance", request);
}

/**
 * `GET /v1/organizations/{org}`: The organization's name, plan, establishments and settings (anyone
 * with a role in it, and operators).
 * @param {Api} api
 * @param {{ path: { org: OrganizationId } }} request
 * @returns {Promise<Organization>}
 */
export function readOrganization(api, request) {
  return api.call("GET", "/v1/organizations/{org}", request);
}

/**
 * `GET /v1/organizations/{org}/users/{id}/permissions`: A user's grants, establishment → services.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId } }} request
 * @returns {Promise<Permissions>}
 */
export function readPermissions(api, request) {
  return api.call("GET", "/v1/organizations/{org}/users/{id}/permissions", request);
}

/**
 * `GET /v1/organizations/{org}/users/{id}`: A user's profile, with any pending contact change.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId } }} request
 * @returns {Promise<Profile>}
 */
export function readProfile(api, request) {
  return api.call("GET", "/v1/organizations/{org}/users/{id}", request);
}

/**
 * `POST /v1/organizations/{org}/users/{id}/renewal`: Renew a seat for one year at the current
 * price. A running seat keeps running to its end and the year bought follows it without a gap
 * (`next_seat`); status and access do not change. One renewal ahead at most (a second is refused
 * with `already_renewed` until the renewed year has begun). A seat that ended less than 30 days ago
 * is renewed from now; later, subscribe the person again.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId }, headers: { "Idempotency-Key": string }, body?: {  } }} request
 * @returns {Promise<RenewalReceipt>}
 */
export function renew(api, request) {
  return api.call("POST", "/v1/organizations/{org}/users/{id}/renewal", request);
}

/**
 * `GET /v1/organizations/{org}/users/{id}/renewal`: What renewing the user would cost now and the
 * year it would buy, without buying it (what to show before paying: renewals are not refunded).
 * Refused as the renewal would be for the user and the caller; a balance that does not cover it is
 * said (`sufficient: false`), not refused.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId } }} request
 * @returns {Promise<RenewalQuote>}
 */
export function renewalQuote(api, request) {
  return api.call("GET", "/v1/organizations/{org}/users/{id}/renewal", request);
}

/**
 * `POST /v1/organizations/{org}/users/{id}/activation/resend`: Send a fresh link and/or code; the
 * old ones stop working. At most 3 per user in 15 minutes.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId }, body?: { email?: boolean, sms?: boolean } }} request
 * @returns {Promise<Deliveries>}
 */
export function resendActivation(api, request) {
  return api.call("POST", "/v1/organizations/{org}/users/{id}/activation/resend", request);
}

/**
 * `POST /v1/organizations/{org}/users/{id}/messages/{slot}/resend`: Send again a message the user
 * missed.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId, slot: "activation_email" | "activation_sms" | "verification_email" | "verification_sms" | "contact_changed_email" | "contact_changed_sms" | "reminder_email" | "reminder_sms" | "suspension_email" | "suspension_sms" } }} request
 * @returns {Promise<{ slot: string, state: "queued" }>}
 */
export function resendMessage(api, request) {
  return api.call("POST", "/v1/organizations/{org}/users/{id}/messages/{slot}/resend", request);
}

/**
 * `PUT /v1/registry/persons/{id}`: Create or replace a person registry entry (operators only).
 * @param {Api} api
 * @param {{ path: { id: PersonId }, body: SavePerson }} request
 * @returns {Promise<Person>}
 */
export function savePerson(api, request) {
  return api.call("PUT", "/v1/registry/persons/{id}", request);
}

/**
 * `PUT /v1/organizations/{org}/users/{id}/permissions`: Replace a user's grants, based on the
 * version read.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId }, body: { version: Version, grants: GrantMatrix } }} request
 * @returns {Promise<Permissions>}
 */
export function setPermissions(api, request) {
  return api.call("PUT", "/v1/organizations/{org}/users/{id}/permissions", request);
}

/**
 * `POST /v1/organizations/{org}/subscriptions`: Subscribe one to 24 persons, all or nothing,
 * charging the balance once. An administrator subscribes anyone; the manager may always buy their
 * own seat; a registered employee may buy their own seat for the establishments that employ them
 * (unless the manager turned `employee_self_subscription` off). The idempotency key belongs to the
 * caller: another caller's key is never replayed.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId }, headers: { "Idempotency-Key": string }, body: SubscriptionRequest }} request
 * @returns {Promise<SubscriptionReceipt>}
 */
export function subscribe(api, request) {
  return api.call("POST", "/v1/organizations/{org}/subscriptions", request);
}

/**
 * `POST /v1/organizations/{org}/users/{id}/suspension`: Stop a user for good; the seat ends without
 * refund.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId }, body: { reason: Text500 } }} request
 * @returns {Promise<Suspended>}
 */
export function suspend(api, request) {
  return api.call("POST", "/v1/organizations/{org}/users/{id}/suspension", request);
}

/**
 * `GET /v1/organizations/{org}/users/{id}/audit`: One user's audit trail, newest first.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId }, query?: { action?: Array<AuditAction>, from?: string, to?: string, limit?: number, cursor?: string, format?: "json" | "csv" } }} request
 * @returns {Promise<{ entries: Array<AuditEntry>, people: People, next_cursor?: string }>}
 */
export function userAudit(api, request) {
  return api.call("GET", "/v1/organizations/{org}/users/{id}/audit", request);
}

/**
 * `GET /v1/organizations/{org}/users/{id}/audit` as CSV (`Accept: text/csv`): the file, named by
 * the server.
 * @param {Api} api
 * @param {{ path: { org: OrganizationId, id: PersonId }, query?: { action?: Array<AuditAction>, from?: string, to?: string, limit?: number, cursor?: string, format?: "json" | "csv" } }} request
 * @returns {Promise<{ blob: Blob, fileName: string, nextCursor: string | null }>}
 */
export function userAuditCsv(api, request) {
  return api.download("GET", "/v1/organizations/{org}/users/{id}/audit", request);
}

