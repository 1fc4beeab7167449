//! Suspension: permanent and immediate. Access ends at once, the seat (and any renewal
//! bought ahead) ends without refund, live secrets and pending contact changes die, and the
//! user is told through the channels their settings choose.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::{Delivery, Scene};
use crate::audit::AuditAction;
use crate::entropy::Fresh;
use crate::error::{Error, Kind, Rejection};
use crate::identity::PersonId;
use crate::organization::OrganizationId;
use crate::outbox::{Channel, DeliveryState, Message};
use crate::pipeline::{Command, Decision, Reads, RequestMeta, audit_entry};
use crate::policy::{Action, OnUser, authorize};
use crate::store::{Record, Write};
use crate::user::{Suspension, UserStatus};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Suspended {
    pub organization_id: OrganizationId,
    pub user_id: PersonId,
    pub status: UserStatus,
    pub reason: String,
    #[serde(with = "crate::clock::utc")]
    pub suspended_at: OffsetDateTime,
    /// The seat that ended with the suspension (nothing is refunded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_seat_id: Option<String>,
    /// The notice to the user, as their account-notice settings choose.
    pub notice: NoticeDelivery,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct NoticeDelivery {
    pub email: Delivery,
    pub sms: Delivery,
}

pub struct Suspend {
    pub organization: OrganizationId,
    pub user: PersonId,
    pub reason: String,
}

impl Suspend {
    pub fn new(organization: OrganizationId, user: PersonId, reason: &str) -> Result<Self, Rejection> {
        Ok(Suspend { organization, user, reason: crate::parse::text("reason", reason, 500)? })
    }
}

impl Command for Suspend {
    type State = Scene;
    type Answer = Suspended;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        Scene::load_with_user(meta, reads, &self.organization, &self.user).await
    }

    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        let standing = scene.standing(meta, now)?;
        let target = scene.target(standing, OnUser::Suspend, &self.user)?;
        authorize(standing, Action::Suspend(target)).map(drop)
    }

    fn decide(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<Suspended>, Error> {
        let target = scene.user(&self.user).ok_or_else(Rejection::user_not_found)?;
        if target.status == UserStatus::Suspended {
            return Err(Rejection::new(Kind::AlreadySuspended, "this user is already suspended").into());
        }
        // Only people reach this point (the policy refuses operators and services).
        let by = meta.caller.person().cloned().ok_or_else(|| Rejection::new(Kind::Forbidden, "only people suspend users"))?;
        let mut next = target.clone();
        let ended: Vec<_> = [next.seat.take(), next.next_seat.take()]
            .into_iter()
            .flatten()
            .map(|mut seat| {
                if seat.ends_at > now {
                    seat.ends_at = now.max(seat.starts_at);
                }
                seat
            })
            .collect();
        let ended_seat_id = target.current_seat(now).map(|seat| seat.id.clone());
        next.past_seats.extend(ended);
        next.status = UserStatus::Suspended;
        next.suspension = Some(Suspension { by, reason: self.reason.clone(), at: now });
        next.activation.email_token = None;
        next.activation.mobile_code = None;
        next.pending_email = None;
        next.pending_mobile = None;
        // What was still queued (an activation link or code, a verification code, a
        // reminder) will never go out: the user's view says so now, not at the next delivery.
        for record in next.deliveries.values_mut().filter(|record| record.state == DeliveryState::Queued) {
            record.state = DeliveryState::Superseded;
            record.updated_at = now;
        }
        next.updated_at = now;
        next.version = target.version + 1;
        let mut decision = Decision::answer(());
        let channels = target.notifications.account_notices;
        if channels.email {
            decision.notify(meta, &mut next, Message::AccountSuspended { channel: Channel::Email, at: now }, now, fresh);
        }
        if channels.sms {
            decision.notify(meta, &mut next, Message::AccountSuspended { channel: Channel::Sms, at: now }, now, fresh);
        }
        let audit = audit_entry(
            meta,
            &self.organization,
            AuditAction::UserSuspended,
            Some(&next),
            json!({ "reason": self.reason, "status": { "before": target.status, "after": next.status }, "ended_seat_id": ended_seat_id }),
            now,
            fresh,
        );
        let answer = Suspended {
            organization_id: self.organization.clone(),
            user_id: next.id.clone(),
            status: next.status,
            reason: self.reason.clone(),
            suspended_at: now,
            ended_seat_id,
            notice: NoticeDelivery { email: Delivery::of(channels.email), sms: Delivery::of(channels.sms) },
        };
        Ok(decision.with_answer(answer).write(Write::replace(Record::User(next), target.version)).audit(audit))
    }
}
