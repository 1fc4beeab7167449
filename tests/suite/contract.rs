//! The store contract: what every `Store` adapter must do. Each test runs against the
//! embedded store and against DynamoDB on moto.

use std::collections::BTreeSet;

use domain::audit::{AuditAction, AuditScope};
use domain::idempotency::{IdempotencyRecord, IdempotencyScope};
use domain::ledger::{Balance, Direction, LedgerEntry, LedgerReason};
use domain::money::Halalas;
use domain::store::{
    AuditQuery, CommitError, Expect, ExpiryPartition, Key, LISTING_READ_BUDGET, PageRequest, Position, Record, StoreError, UserFilter,
    Write,
};
use domain::user::{User, UserStatus};
use system_tests::world::{Backend, World};
use time::Duration;

use crate::fixtures::{audit, establishment, full_user, org, person};

async fn every_record_kind_round_trips(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let now = world.now();
    let organization = org(1);
    let user = full_user(&organization, &person('2', 7), now);
    let entry = audit(&organization, Some(&user.id), AuditAction::UserModified, now, &["1-100"]);
    let ledger = LedgerEntry {
        organization: organization.clone(),
        id: "entry_1".into(),
        sequence: 300,
        at: now,
        direction: Direction::Debit,
        amount: Halalas::new(15000),
        balance_after: Halalas::new(85000),
        reason: LedgerReason::Seat {
            seat_id: "seat_1".into(),
            person: user.id.clone(),
            purchase: domain::ledger::SeatPurchase::Subscription,
        },
        actor: domain::audit::Actor::Operator("op".into()),
        request_id: "r".into(),
    };
    let idempotency = IdempotencyRecord {
        organization: organization.clone(),
        scope: IdempotencyScope::Caller,
        key_digest: "k".repeat(64),
        request_digest: "d".repeat(64),
        body: r#"{"a":"ب"}"#.into(),
        created_at: now,
        expires_at: Some(now + Duration::hours(24)),
    };
    let balance = Balance { seats_sold: 3, ..Balance::opening(organization.clone()) };
    store
        .commit(vec![
            Write::create(Record::User(user.clone())),
            Write::create(Record::Audit(entry.clone())),
            Write::create(Record::Ledger(ledger.clone())),
            Write::create(Record::Idempotency(idempotency.clone())),
            Write::create(Record::Balance(balance.clone())),
        ])
        .await
        .expect("commit");
    let loaded = store
        .load(&[
            Key::User(organization.clone(), user.id.clone()),
            Key::Balance(organization.clone()),
            Key::Idempotency(organization.clone(), IdempotencyScope::Caller, "k".repeat(64)),
        ])
        .await
        .expect("load");
    assert_eq!(loaded.user(&organization, &user.id), Some(&user));
    assert_eq!(loaded.balance(&organization), Some(&balance));
    assert_eq!(loaded.idempotency(&organization, IdempotencyScope::Caller, &"k".repeat(64)), Some(&idempotency));
    let audit_page = store
        .audit(
            &AuditQuery {
                scope: AuditScope::Organization(organization.clone()),
                target: None,
                actions: None,
                from: None,
                to: None,
                establishments: None,
            },
            PageRequest::first(10),
        )
        .await
        .expect("audit");
    assert_eq!(audit_page.items, vec![entry]);
    assert_eq!(store.ledger(&organization, PageRequest::first(10)).await.expect("ledger").items, vec![ledger]);
}
both!(every_record_kind_round_trips);

async fn a_single_key_and_missing_keys_load(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let organization = org(2);
    let loaded = store.load(&[Key::Balance(organization.clone())]).await.expect("load");
    assert!(loaded.is_empty());
    let loaded = store.load(&[Key::Balance(organization.clone()), Key::Organization(organization.clone())]).await.expect("load");
    assert!(loaded.is_empty());
    store.commit(vec![Write::create(Record::Balance(Balance::opening(organization.clone())))]).await.expect("create");
    // Asking twice for the same key is fine.
    let loaded = store.load(&[Key::Balance(organization.clone()), Key::Balance(organization.clone())]).await.expect("load");
    assert_eq!(loaded.len(), 1);
}
both!(a_single_key_and_missing_keys_load);

async fn conditions_hold_or_nothing_is_written(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let organization = org(3);
    let balance = Balance::opening(organization.clone());
    store.commit(vec![Write::create(Record::Balance(balance.clone()))]).await.expect("create");

    // Creating again fails, alone or in a transaction, and reports which write failed.
    let again = store.commit(vec![Write::create(Record::Balance(balance.clone()))]).await;
    assert!(matches!(again, Err(CommitError::Conflict { ref failed }) if failed == &[0]), "{again:?}");
    let user = full_user(&organization, &person('1', 9), world.now());
    let before = world.snapshot().await;
    let mixed = store.commit(vec![Write::create(Record::User(user.clone())), Write::create(Record::Balance(balance.clone()))]).await;
    assert!(matches!(mixed, Err(CommitError::Conflict { ref failed }) if failed == &[1]), "{mixed:?}");
    assert_eq!(world.snapshot().await, before, "a failed transaction writes nothing");

    // Replacing needs the version that was read.
    let next = Balance { available: Halalas::new(5), version: 2, ..balance.clone() };
    let stale = store.commit(vec![Write { record: Record::Balance(next.clone()), expect: Expect::Version(7) }]).await;
    assert!(matches!(stale, Err(CommitError::Conflict { .. })), "{stale:?}");
    store.commit(vec![Write::replace(Record::Balance(next.clone()), 1)]).await.expect("replace at the read version");
    let loaded = store.load(&[Key::Balance(organization.clone())]).await.expect("load");
    assert_eq!(loaded.balance(&organization), Some(&next));
    let replay = store.commit(vec![Write::replace(Record::Balance(next), 1)]).await;
    assert!(matches!(replay, Err(CommitError::Conflict { .. })), "a second replace at the same version fails");

    // `Present` needs something there.
    let absent = Balance::opening(org(4));
    let missing = store.commit(vec![Write { record: Record::Balance(absent), expect: Expect::Present }]).await;
    assert!(matches!(missing, Err(CommitError::Conflict { .. })), "{missing:?}");
}
both!(conditions_hold_or_nothing_is_written);

async fn idempotency_records_can_be_reused_only_once_expired(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let now = world.now();
    let record = IdempotencyRecord {
        organization: org(5),
        scope: IdempotencyScope::Caller,
        key_digest: "a".repeat(64),
        request_digest: "b".repeat(64),
        body: "{}".into(),
        created_at: now,
        expires_at: Some(now + Duration::hours(24)),
    };
    let write = |at| Write { record: Record::Idempotency(record.clone()), expect: Expect::AbsentOrExpiredBy(at) };
    store.commit(vec![write(now)]).await.expect("absent: written");
    let just_before = now + Duration::hours(24) - Duration::microseconds(1);
    assert!(record.is_live_at(just_before));
    assert!(matches!(store.commit(vec![write(just_before)]).await, Err(CommitError::Conflict { .. })), "live: refused");
    // From the expiry instant on the key is free, as `is_live_at` says (the simulator found a
    // key refused at that instant, by a condition one microsecond stricter than the read).
    let at_expiry = now + Duration::hours(24);
    assert!(!record.is_live_at(at_expiry));
    store.commit(vec![write(at_expiry)]).await.expect("expired at that instant: written");
}
both!(idempotency_records_can_be_reused_only_once_expired);

async fn malformed_transactions_are_refused_whole(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let before = world.snapshot().await;
    let balance = Balance::opening(org(6));
    let twice = store.commit(vec![Write::create(Record::Balance(balance.clone())), Write::create(Record::Balance(balance))]).await;
    assert!(matches!(twice, Err(CommitError::Unavailable(_))), "the same item twice: {twice:?}");
    let too_many: Vec<Write> = (0..101).map(|n| Write::create(Record::Balance(Balance::opening(org(1000 + n))))).collect();
    assert!(store.commit(too_many).await.is_err(), "more than 100 writes");
    assert_eq!(world.snapshot().await, before);
}
both!(malformed_transactions_are_refused_whole);

async fn users_page_in_id_order_with_filters(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let now = world.now();
    let organization = org(7);
    let mut writes = Vec::new();
    let mut expected = Vec::new();
    for n in 0..23u32 {
        let mut user: User = full_user(&organization, &person(if n % 2 == 0 { '1' } else { '2' }, 100 + n), now);
        user.establishments = BTreeSet::from([establishment(if n % 3 == 0 { "1-300" } else { "1-100" })]);
        if n % 5 == 0 {
            user.status = UserStatus::Suspended;
        }
        if n % 7 == 1 {
            // Active on paper, but the seat has run out.
            user.seat.as_mut().expect("seat").ends_at = now - Duration::hours(1);
        }
        if n % 4 == 0 {
            user.name =
                domain::person::PersonName { ar: Some("فاطمة الزهراني".into()), en: Some("Fatimah Al-Zahrani".into()) };
        }
        expected.push(user.clone());
        writes.push(Write::create(Record::User(user)));
    }
    // Another organization's users never show.
    writes.push(Write::create(Record::User(full_user(&org(8), &person('1', 1), now))));
    store.commit(writes).await.expect("users");
    expected.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));

    let mut seen = Vec::new();
    let mut page = PageRequest::first(5);
    loop {
        let result = store.users(&organization, &UserFilter::at(now), page.clone()).await.expect("page");
        assert!(result.items.len() <= 5);
        seen.extend(result.items);
        match result.next {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen, expected, "every user once, in ID order");

    for (filter, keep) in [
        (
            UserFilter { status: Some(UserStatus::Suspended), ..UserFilter::at(now) },
            Box::new(|u: &User| u.status == UserStatus::Suspended) as Box<dyn Fn(&User) -> bool>,
        ),
        (
            UserFilter {
                status: Some(UserStatus::Suspended),
                now,
                establishments: Some(BTreeSet::from([establishment("1-100")])),
                search: None,
            },
            Box::new(|u: &User| u.status == UserStatus::Suspended && u.establishments.contains(&establishment("1-100"))),
        ),
        (
            UserFilter { status: Some(UserStatus::Expired), now, ..UserFilter::at(now) },
            Box::new(move |u: &User| u.effective_status(now) == UserStatus::Expired),
        ),
        (
            UserFilter { status: Some(UserStatus::Active), now, ..UserFilter::at(now) },
            Box::new(move |u: &User| u.effective_status(now) == UserStatus::Active),
        ),
        (
            UserFilter { establishments: Some(BTreeSet::from([establishment("1-300"), establishment("1-999")])), ..UserFilter::at(now) },
            Box::new(|u: &User| u.establishments.contains(&establishment("1-300"))),
        ),
        (
            // Typed without the hamza and with ه for ة, as people do.
            UserFilter { search: Some(domain::search::normalize("فاطمه")), ..UserFilter::at(now) },
            Box::new(|u: &User| u.name.en.as_deref() == Some("Fatimah Al-Zahrani")),
        ),
        (
            UserFilter {
                search: Some(domain::search::normalize("AL-ZAHRANI")),
                status: Some(UserStatus::Suspended),
                ..UserFilter::at(now)
            },
            Box::new(|u: &User| u.name.en.as_deref() == Some("Fatimah Al-Zahrani") && u.status == UserStatus::Suspended),
        ),
    ] {
        let mut found = Vec::new();
        let mut page = PageRequest::first(3);
        loop {
            let result = store.users(&organization, &filter, page.clone()).await.expect("page");
            found.extend(result.items);
            match result.next {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        let wanted: Vec<User> = expected.iter().filter(|u| keep(u)).cloned().collect();
        assert!(!wanted.is_empty());
        assert_eq!(found, wanted, "{filter:?}");
    }
}
both!(users_page_in_id_order_with_filters);

async fn cursors_are_bound_to_their_listing(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let now = world.now();
    let mine = org(9);
    let writes: Vec<Write> = (0..3).map(|n| Write::create(Record::User(full_user(&mine, &person('1', 500 + n), now)))).collect();
    store.commit(writes).await.expect("users");
    let first = store.users(&mine, &UserFilter::at(now), PageRequest::first(1)).await.expect("page");
    let cursor = first.next.expect("more");
    let other = store.users(&org(10), &UserFilter::at(now), PageRequest { cursor: Some(cursor.clone()), limit: 1 }).await;
    assert!(matches!(other, Err(StoreError::InvalidCursor)), "another organization's cursor: {other:?}");
    let ledger = store
        .ledger(
            &mine,
            PageRequest {
                cursor: Some(Position::encode(&std::collections::BTreeMap::from([("not".to_owned(), "a position".to_owned())]))),
                limit: 1,
            },
        )
        .await;
    assert!(matches!(ledger, Err(StoreError::InvalidCursor)), "garbage: {ledger:?}");
}
both!(cursors_are_bound_to_their_listing);

async fn audit_lists_newest_first_with_filters(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let start = world.now();
    let organization = org(11);
    let alice = person('1', 11);
    let bob = person('2', 12);
    let mut entries = Vec::new();
    for n in 0..30i64 {
        let target = if n % 2 == 0 { &alice } else { &bob };
        let action = if n % 3 == 0 { AuditAction::UserSuspended } else { AuditAction::UserModified };
        let branch = if n % 4 == 0 { "1-400" } else { "1-100" };
        entries.push(audit(&organization, Some(target), action, start + Duration::minutes(n), &[branch]));
    }
    store.commit(entries.iter().cloned().map(|e| Write::create(Record::Audit(e))).collect()).await.expect("entries");
    let query = |target: Option<&domain::identity::PersonId>| AuditQuery {
        scope: AuditScope::Organization(organization.clone()),
        target: target.cloned(),
        actions: None,
        from: None,
        to: None,
        establishments: None,
    };
    let collect = |query: AuditQuery, limit: usize| {
        let store = store.clone();
        async move {
            let mut found = Vec::new();
            let mut page = PageRequest::first(limit);
            loop {
                let result = store.audit(&query, page.clone()).await.expect("page");
                found.extend(result.items);
                match result.next {
                    Some(cursor) => page.cursor = Some(cursor),
                    None => break found,
                }
            }
        }
    };
    let mut newest_first = entries.clone();
    newest_first.reverse();
    assert_eq!(collect(query(None), 7).await, newest_first);
    let bobs: Vec<_> = newest_first.iter().filter(|e| e.target.as_ref() == Some(&bob)).cloned().collect();
    assert_eq!(collect(query(Some(&bob)), 4).await, bobs);
    let window = AuditQuery { from: Some(start + Duration::minutes(10)), to: Some(start + Duration::minutes(19)), ..query(None) };
    let in_window: Vec<_> =
        newest_first.iter().filter(|e| e.at >= start + Duration::minutes(10) && e.at <= start + Duration::minutes(19)).cloned().collect();
    assert_eq!(in_window.len(), 10);
    assert_eq!(collect(window, 3).await, in_window);
    let suspensions = AuditQuery {
        actions: Some(BTreeSet::from([AuditAction::UserSuspended])),
        establishments: Some(BTreeSet::from([establishment("1-400")])),
        ..query(Some(&alice))
    };
    let wanted: Vec<_> = newest_first
        .iter()
        .filter(|e| {
            e.action == AuditAction::UserSuspended
                && e.target.as_ref() == Some(&alice)
                && e.establishments.contains(&establishment("1-400"))
        })
        .cloned()
        .collect();
    assert!(!wanted.is_empty());
    assert_eq!(collect(suspensions, 2).await, wanted);
}
both!(audit_lists_newest_first_with_filters);

/// Every user of one expiry partition, through pages of `limit`.
async fn expiring_in(
    store: &std::sync::Arc<dyn domain::store::Store>,
    partition: ExpiryPartition,
    until: Option<time::OffsetDateTime>,
    limit: usize,
) -> Vec<User> {
    let mut found = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let result = store.expiring(partition, until, page.clone()).await.expect("page");
        assert!(result.items.len() <= limit);
        found.extend(result.items.into_iter().map(|item| item.expect("readable")));
        match result.next {
            Some(cursor) => page.cursor = Some(cursor),
            None => return found,
        }
    }
}

async fn the_expiry_index_keys_seats_by_saudi_day_and_shard(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let now = world.now();
    let organization = org(12);
    // The Saudi day 30 days on, and the day after; a suspended user and a renewed one.
    let day = domain::clock::saudi_day(now) + Duration::days(30);
    let start = domain::clock::start_of_saudi_day(day);
    let mut on_day = Vec::new();
    let mut writes = Vec::new();
    for n in 0..40u32 {
        let mut user = full_user(&organization, &person('1', 900 + n), now);
        let seat = user.seat.as_mut().expect("seat");
        seat.ends_at = match n % 4 {
            0 => start,
            1 => start + Duration::hours(23) + Duration::minutes(59),
            2 => start + Duration::days(1),
            _ => start + Duration::hours(12),
        };
        if n == 3 {
            user.status = UserStatus::Suspended;
        }
        if n == 7 {
            // Renewed: the index follows the last paid period, a year on.
            let mut next = user.seat.clone().expect("seat");
            next.id = "seat_2".into();
            next.starts_at = next.ends_at;
            next.ends_at = next.starts_at + Duration::days(365);
            user.next_seat = Some(next);
        }
        if n % 4 != 2 && n != 3 && n != 7 {
            on_day.push(user.clone());
        }
        writes.push(Write::create(Record::User(user)));
    }
    store.commit(writes).await.expect("users");

    let mut found = Vec::new();
    for partition in ExpiryPartition::of_day(day) {
        let users = expiring_in(store, partition, None, 2).await;
        assert!(users.iter().all(|u| domain::store::expiry_shard(&u.organization, &u.id) == partition.shard), "each in its own shard");
        let ends: Vec<_> = users.iter().map(|u| u.seat.as_ref().expect("seat").ends_at).collect();
        assert!(ends.windows(2).all(|pair| pair[0] <= pair[1]), "in order of their end");
        found.extend(users);
    }
    let ids = |users: &[User]| users.iter().map(|u| u.id.clone()).collect::<BTreeSet<_>>();
    assert_eq!(ids(&found), ids(&on_day), "the day's seats, every shard together");
    let shards = found.iter().map(|u| domain::store::expiry_shard(&u.organization, &u.id)).collect::<BTreeSet<_>>();
    assert!(shards.len() > 8, "spread over the shards: {shards:?}");

    // `until` stops at seats that have ended by then.
    let noon = start + Duration::hours(12);
    let mut by_noon = Vec::new();
    for partition in ExpiryPartition::of_day(day) {
        by_noon.extend(expiring_in(store, partition, Some(noon), 1).await);
    }
    let wanted: Vec<User> = on_day.iter().filter(|u| u.seat.as_ref().expect("seat").ends_at <= noon).cloned().collect();
    assert_eq!(ids(&by_noon), ids(&wanted));
    assert!(!wanted.is_empty() && wanted.len() < on_day.len());
}
both!(the_expiry_index_keys_seats_by_saudi_day_and_shard);

async fn a_filtered_listing_reads_at_most_its_budget(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let now = world.now();
    let organization = org(13);
    let total = LISTING_READ_BUDGET * 2 + 50;
    let mut users: Vec<User> = (0..total as u32).map(|n| full_user(&organization, &person('1', 20_000 + n), now)).collect();
    // The only match is the last user in ID order.
    users.last_mut().expect("users").status = UserStatus::Suspended;
    for chunk in users.chunks(domain::store::MAX_WRITES) {
        store.commit(chunk.iter().cloned().map(|u| Write::create(Record::User(u))).collect()).await.expect("users");
    }
    let filter = UserFilter { status: Some(UserStatus::Suspended), ..UserFilter::at(now) };
    let mut page = PageRequest::first(20);
    let mut requests = Vec::new();
    loop {
        let result = store.users(&organization, &filter, page.clone()).await.expect("page");
        assert!(result.scanned <= LISTING_READ_BUDGET, "one request reads at most the budget: {}", result.scanned);
        requests.push((result.items.len(), result.scanned));
        match result.next {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(requests.iter().map(|(found, _)| found).sum::<usize>(), 1, "{requests:?}");
    assert!(requests.len() >= 3, "short pages with a cursor to continue: {requests:?}");
    assert_eq!(requests[0], (0, LISTING_READ_BUDGET), "the first request stops at the budget");
    assert_eq!(requests.iter().map(|(_, read)| read).sum::<usize>(), total, "every user read once over the pages");

    // Without a filter, a request reads its page and no more.
    let plain = store.users(&organization, &UserFilter::at(now), PageRequest::first(20)).await.expect("page");
    assert_eq!((plain.items.len(), plain.scanned), (20, 20));
}
both!(a_filtered_listing_reads_at_most_its_budget);

async fn the_sweep_state_round_trips(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let now = world.now();
    let cursor = Position::encode(&std::collections::BTreeMap::from([("pk".to_owned(), "ORG#1".to_owned())]));
    let state = domain::actions::sweep::SweepState {
        version: 1,
        completed_through: Some(now.date()),
        progress: Some(domain::actions::sweep::DayProgress {
            day: now.date() + Duration::days(1),
            partitions: [
                ("EXPIRY#2027-01-01#00".to_owned(), domain::actions::sweep::Mark::Done),
                ("EXPIRY#2027-01-01#01".to_owned(), domain::actions::sweep::Mark::Resume(Some(cursor))),
                ("EXPIRY#2027-01-01#02".to_owned(), domain::actions::sweep::Mark::Resume(None)),
            ]
            .into(),
        }),
        retries: vec![domain::actions::sweep::Retry { partition: ExpiryPartition { day: now.date(), shard: 3 }, from: None, runs: 2 }],
        lease: Some(domain::actions::sweep::Lease { run: "run-1".into(), until: now }),
        updated_at: now,
    };
    store.commit(vec![Write::create(Record::SweepState(state.clone()))]).await.expect("state");
    let loaded = store.load(&[Key::SweepState]).await.expect("load");
    assert_eq!(loaded.sweep_state(), Some(&state));
}
both!(the_sweep_state_round_trips);

async fn link_tokens_are_found_until_replaced(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.env.store;
    let organization = org(13);
    let user = full_user(&organization, &person('1', 13), world.now());
    let token = user.activation.email_token.clone().expect("token").sha256;
    store.commit(vec![Write::create(Record::User(user.clone()))]).await.expect("user");
    assert_eq!(store.user_by_link_token(&token).await.expect("lookup"), Some(user.clone()));
    let mut replaced = user.clone();
    replaced.activation.email_token.as_mut().expect("token").sha256 = "99".repeat(32);
    replaced.version = 2;
    store.commit(vec![Write::replace(Record::User(replaced), 1)]).await.expect("replace");
    assert_eq!(store.user_by_link_token(&token).await.expect("lookup"), None);
    assert!(store.user_by_link_token(&"99".repeat(32)).await.expect("lookup").is_some());
}
both!(link_tokens_are_found_until_replaced);

/// The `by_undelivered` index holds users with a queued message, by shard and by when the
/// first is due for the redrive; a user whose messages all ended leaves it.
async fn the_undelivered_index_finds_queued_messages_by_when_they_are_due(backend: Backend) {
    use domain::outbox::{DeliveryRecord, DeliveryState, REDRIVE_AFTER, Slot};
    let world = World::new(backend).await;
    let store = &world.env.store;
    let now = world.now();
    let organization = org(13);
    let queued = |at: time::OffsetDateTime, attempts: u32| DeliveryRecord {
        intent: "intent_1".into(),
        state: DeliveryState::Queued,
        message_id: None,
        reason: None,
        attempts,
        updated_at: at,
        claim: None,
        queued_at: Some(at),
    };
    let mut users = Vec::new();
    for n in 0..30u32 {
        let mut user = full_user(&organization, &person('1', 700 + n), now);
        // Queued n minutes ago (untried), or tried once (its wait doubles); every third
        // sent already.
        let mut record = queued(now - Duration::minutes(n as i64), n % 2);
        if n % 3 == 0 {
            record.state = DeliveryState::Sent;
        }
        user.deliveries.insert(Slot::ActivationEmail, record);
        users.push(user);
    }
    store.commit(users.iter().cloned().map(|u| Write::create(Record::User(u))).collect()).await.expect("users");
    let due_by = |user: &User, at: time::OffsetDateTime| domain::outbox::redrive_due(&user.deliveries).is_some_and(|due| due <= at);
    for at in [now, now + REDRIVE_AFTER, now + REDRIVE_AFTER * 2] {
        let mut found = Vec::new();
        for shard in 0..domain::store::EXPIRY_SHARDS {
            let mut page = PageRequest::first(2);
            loop {
                let result = store.undelivered(shard, at, page.clone()).await.expect("page");
                let users: Vec<User> = result.items.into_iter().map(|item| item.expect("readable")).collect();
                let dues: Vec<_> = users.iter().map(|u| domain::outbox::redrive_due(&u.deliveries)).collect();
                assert!(dues.windows(2).all(|w| w[0] <= w[1]), "earliest first: {dues:?}");
                found.extend(users.into_iter().map(|u| u.id));
                match result.next {
                    Some(cursor) => page.cursor = Some(cursor),
                    None => break,
                }
            }
        }
        found.sort();
        let mut wanted: Vec<_> = users.iter().filter(|u| due_by(u, at)).map(|u| u.id.clone()).collect();
        wanted.sort();
        assert!(!wanted.is_empty() && wanted.len() < 30, "a real selection at {at}: {}", wanted.len());
        assert_eq!(found, wanted, "due by {at}");
    }
    // Sent: out of the index.
    let mut user = users[1].clone();
    let version = user.version;
    user.deliveries.get_mut(&Slot::ActivationEmail).expect("queued").state = DeliveryState::Sent;
    user.version += 1;
    store.commit(vec![Write::replace(Record::User(user.clone()), version)]).await.expect("sent");
    let shard = domain::store::expiry_shard(&organization, &user.id);
    let later = now + Duration::days(2);
    let left = store.undelivered(shard, later, PageRequest::first(100)).await.expect("page");
    assert!(left.items.iter().all(|item| item.as_ref().expect("readable").id != user.id), "a sent message leaves the index");
}
both!(the_undelivered_index_finds_queued_messages_by_when_they_are_due);
