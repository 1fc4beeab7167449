//! The directory function: reads the balance and ledger, the users, the audit trail, and
//! exports the ledger and the audit trail as CSV.

use std::collections::BTreeSet;

use domain::actions::directory::{self, AuditFilter, ExportAudit, ExportLedger, Exported, People};
use domain::audit::{Actor, AuditAction, AuditEntry};
use domain::cursor::Cursors;
use domain::env::{Env, SecretSource};
use domain::error::{Error, Rejection};
use domain::identity::PersonId;
use domain::ledger::{LedgerEntry, LedgerReason};
use domain::parse;
use domain::pipeline::run;
use gateway::routes::DirectoryRoute;
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};

/// Default and largest page sizes of listings.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;

pub async fn handle(env: &Env, secrets: &dyn SecretSource, request: Request) -> Response<Body> {
    gateway::serve(request, async |incoming: Incoming<DirectoryRoute>| route(env, secrets, incoming).await).await
}

async fn route(env: &Env, secrets: &dyn SecretSource, incoming: Incoming<DirectoryRoute>) -> Result<Reply, Error> {
    let organization = incoming.organization()?;
    let meta = incoming.meta();
    // Listings seal their cursors under a key derived from the code key (`domain::cursor`).
    let cursors = async || Ok::<_, Error>(Cursors::new(&secrets.code_key().await?));
    match incoming.route {
        DirectoryRoute::ReadOrganization => Reply::json(200, &directory::organization(env, &meta, &organization).await?),
        DirectoryRoute::ReadBalance => {
            if wants_csv(&incoming)? {
                let command = ExportLedger { organization: organization.clone(), cursor: cursor(&incoming), cursors: cursors().await? };
                let exported = run(env, &meta, &command).await?.answer;
                return Ok(csv_reply(ledger_csv(&exported)?, &format!("ledger-{}.csv", organization.as_str()), exported));
            }
            let page = incoming.page(DEFAULT_PAGE, MAX_PAGE)?;
            Reply::json(200, &directory::balance(env, &meta, &organization, &page, &cursors().await?).await?)
        }
        DirectoryRoute::ListUsers => {
            let query = directory::UserQuery {
                status: incoming.query("status").map(|s| parse::user_status("status", s)).transpose()?,
                establishment: incoming.query("establishment").map(|e| parse::establishment_id("establishment", e)).transpose()?,
                search: incoming.query("q").map(|q| parse::text("q", q, 100)).transpose()?,
            };
            let page = incoming.page(DEFAULT_PAGE, MAX_PAGE)?;
            Reply::json(200, &directory::users(env, &meta, &organization, query, &page, &cursors().await?).await?)
        }
        DirectoryRoute::OrganizationAudit | DirectoryRoute::UserAudit => {
            let user = if incoming.route == DirectoryRoute::UserAudit { Some(incoming.user_id()?) } else { None };
            let filter = audit_filter(&incoming)?;
            if wants_csv(&incoming)? {
                let command = ExportAudit {
                    organization: organization.clone(),
                    user: user.clone(),
                    filter,
                    cursor: cursor(&incoming),
                    cursors: cursors().await?,
                };
                let exported = run(env, &meta, &command).await?.answer;
                let name = match &user {
                    Some(user) => format!("audit-{}-{}.csv", organization.as_str(), user.as_str()),
                    None => format!("audit-{}.csv", organization.as_str()),
                };
                return Ok(csv_reply(audit_csv(&exported)?, &name, exported));
            }
            let page = incoming.page(DEFAULT_PAGE, MAX_PAGE)?;
            Reply::json(200, &directory::audit(env, &meta, &organization, user.as_ref(), &filter, &page, &cursors().await?).await?)
        }
    }
}

/// `?format=csv` (for links in a browser) or `Accept: text/csv`; `?format=json` forces JSON.
fn wants_csv(incoming: &Incoming<DirectoryRoute>) -> Result<bool, Rejection> {
    match incoming.query("format") {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(_) => Err(Rejection::invalid_request("format", "format is csv or json")),
        None => Ok(incoming.header("accept").is_some_and(|accept| accept.contains("text/csv"))),
    }
}

fn cursor(incoming: &Incoming<DirectoryRoute>) -> Option<String> {
    incoming.query("cursor").filter(|c| !c.is_empty()).map(str::to_owned)
}

/// `?action=a,b`, `?from=`, `?to=`: an RFC 3339 instant, or a date, which means that Saudi
/// day (from its first instant, to its last).
fn audit_filter(incoming: &Incoming<DirectoryRoute>) -> Result<AuditFilter, Rejection> {
    let actions = match incoming.query("action") {
        None => None,
        Some(list) => Some(
            list.split(',')
                .map(|a| AuditAction::parse(a).ok_or_else(|| Rejection::invalid_request("action", format!("there is no action {a:?}"))))
                .collect::<Result<BTreeSet<_>, _>>()?,
        ),
    };
    let bound = |name: &str, end_of_day: bool| {
        incoming
            .query(name)
            .map(|raw| {
                domain::clock::parse_rfc3339(raw)
                    .or_else(|| {
                        domain::clock::parse_date(raw).map(|day| match end_of_day {
                            false => domain::clock::start_of_saudi_day(day),
                            true => domain::clock::start_of_saudi_day(day.next_day().unwrap_or(day)) - time::Duration::microseconds(1),
                        })
                    })
                    .ok_or_else(|| {
                        Rejection::invalid_request(name, "an RFC 3339 time (2026-11-23T00:00:00+03:00) or a Saudi date (2026-11-23)")
                    })
            })
            .transpose()
    };
    Ok(AuditFilter { actions, from: bound("from", false)?, to: bound("to", true)? })
}

/// A CSV answer; `next-cursor` continues an export longer than one answer.
fn csv_reply<T>(body: Vec<u8>, file_name: &str, exported: Exported<T>) -> Reply {
    let reply = Reply::csv(body, file_name);
    match exported.next_cursor {
        Some(next) => reply.with_header("next-cursor", next),
        None => reply,
    }
}

/// UTF-8 with a byte-order mark (so spreadsheet programs show Arabic correctly), RFC 4180
/// quoting by the `csv` crate, and no cell a spreadsheet would run as a formula
/// (`gateway::spreadsheet_cell`).
fn write_csv(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Result<Vec<u8>, Error> {
    let mut writer = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    writer.write_record(header).map_err(Error::internal)?;
    for row in rows {
        writer.write_record(row.into_iter().map(gateway::spreadsheet_cell)).map_err(Error::internal)?;
    }
    writer.into_inner().map_err(|e| Error::internal(e.to_string()))
}

/// A unit enum's name as the JSON API spells it (`debit`, `renewal`).
fn wire_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// An actor's kind and ID, as the JSON API spells them.
fn actor_fields(actor: &Actor) -> (String, String) {
    let value = serde_json::to_value(actor).unwrap_or_default();
    let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
    (field("kind"), field("id"))
}

/// A person's name in Arabic and in English (empty where unknown), for the columns that
/// follow an ID.
fn names(people: &People, id: Option<&PersonId>) -> [String; 2] {
    let name = id.and_then(|id| people.get(id));
    let part = |text: Option<&String>| text.cloned().unwrap_or_default();
    [part(name.and_then(|n| n.ar.as_ref())), part(name.and_then(|n| n.en.as_ref()))]
}

/// The columns are those of the first exports, the names of the people added at the end
/// (so that a reader of the old columns reads on unchanged).
fn audit_csv(exported: &Exported<AuditEntry>) -> Result<Vec<u8>, Error> {
    let header = [
        "time",
        "actor_kind",
        "actor",
        "action",
        "target",
        "establishments",
        "changes",
        "request_id",
        "actor_name_ar",
        "actor_name_en",
        "target_name_ar",
        "target_name_en",
    ];
    write_csv(
        &header,
        exported.rows.iter().map(|entry| {
            let (actor_kind, actor) = actor_fields(&entry.actor);
            let [actor_ar, actor_en] = names(&exported.people, entry.actor.person());
            let [target_ar, target_en] = names(&exported.people, entry.target.as_ref());
            vec![
                domain::clock::key_timestamp(entry.at),
                actor_kind,
                actor,
                entry.action.as_str().to_owned(),
                entry.target.as_ref().map(|t| t.as_str().to_owned()).unwrap_or_default(),
                entry.establishments.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(" "),
                entry.changes.to_string(),
                entry.request_id.clone(),
                actor_ar,
                actor_en,
                target_ar,
                target_en,
            ]
        }),
    )
}

fn ledger_csv(exported: &Exported<LedgerEntry>) -> Result<Vec<u8>, Error> {
    let header = [
        "sequence",
        "time",
        "direction",
        "amount_halalas",
        "balance_after_halalas",
        "reason",
        "reference",
        "person",
        "actor",
        "request_id",
        "person_name_ar",
        "person_name_en",
        "actor_name_ar",
        "actor_name_en",
    ];
    write_csv(
        &header,
        exported.rows.iter().map(|entry| {
            let (reason, reference, person) = match &entry.reason {
                LedgerReason::Credit { payment_reference } => ("credit".to_owned(), payment_reference.clone(), None),
                LedgerReason::Seat { seat_id, person, purchase } => {
                    (format!("seat_{}", wire_name(purchase)), seat_id.clone(), Some(person))
                }
            };
            let (actor_kind, actor) = actor_fields(&entry.actor);
            let [person_ar, person_en] = names(&exported.people, person);
            let [actor_ar, actor_en] = names(&exported.people, entry.actor.person());
            vec![
                entry.sequence.to_string(),
                domain::clock::key_timestamp(entry.at),
                wire_name(&entry.direction),
                entry.amount.get().to_string(),
                entry.balance_after.get().to_string(),
                reason,
                reference,
                person.map(|p| p.as_str().to_owned()).unwrap_or_default(),
                format!("{actor_kind}:{actor}"),
                entry.request_id.clone(),
                person_ar,
                person_en,
                actor_ar,
                actor_en,
            ]
        }),
    )
}
