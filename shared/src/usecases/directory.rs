//! Reading: the balance and its ledger, the organization's users, the audit trail.

use serde::{Deserialize, Serialize};

use super::RequestMeta;
use crate::app::App;
use crate::error::{Error, Rejection};
use crate::ledger::LedgerEntry;
use crate::money::Halalas;
use crate::organization::OrganizationId;
use crate::policy::{Action, Standing, authorize};
use crate::store::{Key, PageRequest};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BalanceView {
    pub organization_id: OrganizationId,
    pub available_halalas: Halalas,
    pub total_credited_halalas: Halalas,
    pub total_debited_halalas: Halalas,
    pub seats_sold: u64,
    /// Newest first.
    pub ledger: Vec<LedgerEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The balance with a page of its ledger (manager or operator).
pub async fn balance(app: &App, meta: &RequestMeta, organization: &OrganizationId, page: PageRequest) -> Result<BalanceView, Error> {
    let now = app.clock.now();
    let mut keys = vec![Key::Organization(organization.clone()), Key::Balance(organization.clone())];
    if let Some(me) = meta.caller.person() {
        keys.push(Key::User(organization.clone(), me.clone()));
    }
    let loaded = app.store.load(&keys).await?;
    let caller = meta.caller.person().and_then(|me| loaded.user(organization, me));
    let standing = Standing::of(&meta.caller, loaded.organization(organization), caller, now)?;
    authorize(standing, Action::ReadBalance)?;
    let balance = loaded.balance(organization).ok_or_else(Rejection::not_found)?;
    let ledger = app.store.ledger(organization, page).await?;
    Ok(BalanceView {
        organization_id: organization.clone(),
        available_halalas: balance.available,
        total_credited_halalas: balance.total_credited,
        total_debited_halalas: balance.total_debited,
        seats_sold: balance.seats_sold,
        ledger: ledger.items,
        next_cursor: ledger.next.map(|cursor| cursor.as_str().to_owned()),
    })
}
