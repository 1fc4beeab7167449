//! Records and people used across the suite.

use std::collections::{BTreeMap, BTreeSet};

use domain::audit::{Actor, AuditAction, AuditEntry, AuditScope};
use domain::catalog::ServiceCode;
use domain::contact::{Email, Language, SaudiMobile};
use domain::grants::Grants;
use domain::identity::{PersonId, with_check_digit};
use domain::organization::{EstablishmentId, OrganizationId, PricingPlan};
use domain::person::PersonName;
use domain::secrets::{CodeDigest, TokenDigest};
use domain::user::{Activation, NotificationSettings, PendingContact, Role, Seat, User, UserStatus, UserType};
use serde_json::json;
use time::{Duration, OffsetDateTime};

/// A valid ID number: `1` (citizen) or `2` (resident) followed by `n`.
pub fn person(kind: char, n: u32) -> PersonId {
    PersonId::parse(&with_check_digit(&format!("{kind}{n:08}"))).expect("valid")
}

pub fn citizen(n: u32) -> String {
    person('1', n).as_str().to_owned()
}

pub fn resident(n: u32) -> String {
    person('2', n).as_str().to_owned()
}

pub fn org(n: u32) -> OrganizationId {
    OrganizationId::parse(&format!("7{n:09}")).expect("valid")
}

pub fn establishment(id: &str) -> EstablishmentId {
    EstablishmentId::parse(id).expect("valid")
}

/// A member with every optional part filled in, to prove storage round-trips all of it.
pub fn full_user(organization: &OrganizationId, id: &PersonId, now: OffsetDateTime) -> User {
    let e1 = establishment("1-100");
    let e2 = establishment("1-200");
    let mut matrix = BTreeMap::new();
    matrix.insert(e1.clone(), BTreeSet::from([ServiceCode::user_management()]));
    User {
        organization: organization.clone(),
        id: id.clone(),
        role: Role::Member,
        plan: PricingPlan::Muqeem,
        status: UserStatus::Active,
        user_type: Some(UserType::ResidentsAndPartners),
        name: PersonName { ar: Some("نورة «الدوسري»".into()), en: Some("Noura \"Al-Dosari\", Jr.".into()) },
        email: Email::parse("noura@example.sa").expect("valid"),
        mobile: SaudiMobile::parse("0541234567").expect("valid"),
        language: Language::Ar,
        job_title: Some("مدير الموارد البشرية".into()),
        notifications: NotificationSettings::default(),
        establishments: BTreeSet::from([e1, e2]),
        grants: Grants::new(matrix),
        grants_version: 4,
        profile_version: 2,
        seat: Some(Seat {
            id: "seat_1".into(),
            starts_at: now,
            ends_at: now + Duration::days(365),
            price: domain::money::Halalas::new(15000),
            reminders_sent: BTreeSet::from([domain::user::Reminder::ThirtyDays]),
            expired: false,
        }),
        next_seat: None,
        iqama_expiry: if id.is_citizen() { None } else { Some(now.date() + Duration::days(400)) },
        past_seats: vec![Seat {
            id: "seat_0".into(),
            starts_at: now - Duration::days(400),
            ends_at: now - Duration::days(35),
            price: domain::money::Halalas::ZERO,
            reminders_sent: BTreeSet::new(),
            expired: true,
        }],
        activation: Activation {
            email_confirmed_at: Some(now),
            mobile_confirmed_at: None,
            email_token: Some(TokenDigest { sha256: "ab".repeat(32), expires_at: now + Duration::hours(72) }),
            mobile_code: Some(CodeDigest { hmac: "cd".repeat(32), expires_at: now + Duration::minutes(10), failed_attempts: 2 }),
        },
        pending_email: Some(PendingContact {
            value: Email::parse("new@example.sa").expect("valid"),
            code: CodeDigest { hmac: "ef".repeat(32), expires_at: now + Duration::minutes(10), failed_attempts: 0 },
            requested_by: person('1', 1),
            requested_at: now,
        }),
        pending_mobile: None,
        deliveries: Default::default(),
        recent_resends: vec![domain::clock::Timestamp(now)],
        suspension: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

pub fn audit(
    organization: &OrganizationId,
    target: Option<&PersonId>,
    action: AuditAction,
    at: OffsetDateTime,
    establishments: &[&str],
) -> AuditEntry {
    AuditEntry {
        scope: AuditScope::Organization(organization.clone()),
        id: domain::entropy::SystemEntropy::hex(6),
        at,
        actor: Actor::Person(person('1', 1)),
        action,
        target: target.cloned(),
        establishments: establishments.iter().map(|e| establishment(e)).collect(),
        changes: json!({ "نص": "قيمة", "nested": { "list": [1, 2.5, "x", null, true] }, "big": 12345678901u64 }),
        request_id: "req-1".into(),
    }
}
