//! The actions, one module per function: each change is a `Command` run by
//! `pipeline::run`; reads are plain functions that load, authorize through the policy and
//! shape a view.
//!
//! | module | function | what |
//! |---|---|---|
//! | `operator` | operator | onboard organizations, keep the registry, credit balances |
//! | `subscribe` | subscribe | quote and buy seats |
//! | `renew` | subscribe | renew a seat |
//! | `resend` | modify | resend a contact code, or a reminder or notice that failed |
//! | `activate` | activate | confirm the link and the code, resend them |
//! | `grant` | grant | the catalog, permissions, the organization's settings |
//! | `authorize` | authorize | the check API |
//! | `modify` | modify | profiles, contact changes |
//! | `suspend` | suspend | suspension |
//! | `sweep` | expiry-sweep | expiry and reminders |
//! | `directory` | directory | the organization, balance, users, audit trail, exports |
//! | `deliver` | deliver | the outbox's messages, sent |
//! | `redrive` | deliver | messages still queued past their time, found and sent again or given up |

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Rejection;
use crate::identity::PersonId;
use crate::organization::{Organization, OrganizationId};
use crate::pipeline::RequestMeta;
use crate::policy::{OnUser, Standing, target_of};
use crate::store::{Key, Loaded};
use crate::user::{Seat, User};

pub mod activate;
pub mod authorize;
pub mod deliver;
pub mod directory;
pub mod grant;
pub mod modify;
pub mod operator;
pub mod redrive;
pub mod renew;
pub mod resend;
pub mod subscribe;
pub mod suspend;
pub mod sweep;

/// What an answer says of a message it queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// In the outbox, committed with the change; the user's view follows its delivery.
    Queued,
    NotNeeded,
}

impl Delivery {
    pub fn of(queued: bool) -> Self {
        if queued { Delivery::Queued } else { Delivery::NotNeeded }
    }
}

/// A seat as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeatView {
    pub id: String,
    #[serde(with = "crate::clock::utc")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "crate::clock::utc")]
    pub ends_at: OffsetDateTime,
    pub price_halalas: crate::money::Halalas,
}

impl From<&Seat> for SeatView {
    fn from(seat: &Seat) -> Self {
        SeatView { id: seat.id.clone(), starts_at: seat.starts_at, ends_at: seat.ends_at, price_halalas: seat.price }
    }
}

/// The keys of a scene: the organization, the calling person's user record there (when
/// the caller is a person), and `extra`.
pub fn scene_keys(meta: &RequestMeta, organization: &OrganizationId, extra: impl IntoIterator<Item = Key>) -> Vec<Key> {
    let mut keys = vec![Key::Organization(organization.clone())];
    if let Some(me) = meta.caller.person() {
        keys.push(Key::User(organization.clone(), me.clone()));
    }
    keys.extend(extra);
    keys
}

/// What one read of an organization found: the caller's standing there comes from it.
#[derive(Debug, Clone)]
pub struct Scene {
    pub organization: OrganizationId,
    pub loaded: Loaded,
}

impl Scene {
    pub fn new(organization: &OrganizationId, loaded: Loaded) -> Self {
        Scene { organization: organization.clone(), loaded }
    }

    /// Reads a scene for a command: the organization, the caller's record and `extra`, in
    /// one batch.
    pub async fn load(
        meta: &RequestMeta,
        reads: &mut crate::pipeline::Reads<'_>,
        organization: &OrganizationId,
        extra: impl IntoIterator<Item = Key>,
    ) -> Result<Scene, crate::error::Error> {
        Ok(Scene::new(organization, reads.load(scene_keys(meta, organization, extra)).await?))
    }

    /// As `load`, with the record of one user of the organization.
    pub async fn load_with_user(
        meta: &RequestMeta,
        reads: &mut crate::pipeline::Reads<'_>,
        organization: &OrganizationId,
        user: &PersonId,
    ) -> Result<Scene, crate::error::Error> {
        Scene::load(meta, reads, organization, [Key::User(organization.clone(), user.clone())]).await
    }

    /// Reads a scene directly from the store (reads that change nothing).
    pub async fn read(
        store: &dyn crate::store::Store,
        meta: &RequestMeta,
        organization: &OrganizationId,
        extra: impl IntoIterator<Item = Key>,
    ) -> Result<Scene, crate::error::Error> {
        Ok(Scene::new(organization, store.load(&scene_keys(meta, organization, extra)).await?))
    }

    pub fn organization(&self) -> Result<&Organization, Rejection> {
        self.loaded.organization(&self.organization).ok_or_else(Rejection::not_found)
    }

    fn caller<'a>(&'a self, meta: &RequestMeta) -> Option<&'a User> {
        meta.caller.person().and_then(|me| self.loaded.user(&self.organization, me))
    }

    pub fn standing<'a>(&'a self, meta: &'a RequestMeta, now: OffsetDateTime) -> Result<Standing<'a>, Rejection> {
        Standing::of(&meta.caller, self.loaded.organization(&self.organization), self.caller(meta), now)
    }

    /// As `standing`, with persons who have no record here as outsiders (self-subscription).
    pub fn standing_with_outsiders<'a>(&'a self, meta: &'a RequestMeta, now: OffsetDateTime) -> Result<Standing<'a>, Rejection> {
        Standing::with_outsiders(&meta.caller, self.loaded.organization(&self.organization), self.caller(meta), now)
    }

    /// The user an action of `kind` is about, as the policy lets the caller find it.
    pub fn target(&self, standing: Standing<'_>, kind: OnUser, id: &PersonId) -> Result<&User, Rejection> {
        target_of(standing, kind, id, self.loaded.user(&self.organization, id))
    }

    pub fn user(&self, id: &PersonId) -> Option<&User> {
        self.loaded.user(&self.organization, id)
    }
}
