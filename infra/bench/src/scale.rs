//! Work at national scale, on the embedded store (size) with every store call counted:
//! the expiry sweep of a day on which 100,000 and 1,000,000 seats end, and a filtered
//! listing of an organization of 50,000 users. The store is wrapped to count what each
//! request would be on DynamoDB (one `Query` per listing call, one `TransactWriteItems` or
//! `PutItem` per commit) and the items each query read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::actions::sweep::{SweepOptions, SweepState};
use domain::audit::AuditEntry;
use domain::clock::{saudi_day, start_of_saudi_day};
use domain::deadline::{Deadline, SWEEP_FUNCTION_TIMEOUT};
use domain::identity::{PersonId, with_check_digit};
use domain::ledger::LedgerEntry;
use domain::organization::{OrganizationId, PricingPlan, SizeTier};
use domain::pipeline::RequestMeta;
use domain::policy::Caller;
use domain::store::{
    AuditQuery, BadItem, CommitError, Contact, ExpiryPartition, Key, LISTING_READ_BUDGET, Loaded, Page, PageRequest, Queries, Record,
    Records, Store, StoreError, UserFilter, Write,
};
use domain::user::{User, UserStatus};
use system_tests::world::{Backend, START, World};
use time::OffsetDateTime;

/// Counts what a store is asked, as DynamoDB requests.
#[derive(Default)]
pub struct Counts {
    pub reads: AtomicUsize,
    pub transactions: AtomicUsize,
    pub single_writes: AtomicUsize,
    pub queries: AtomicUsize,
    pub items_read: AtomicUsize,
}

struct Counting {
    inner: Arc<dyn Store>,
    counts: Arc<Counts>,
}

#[async_trait]
impl Records for Counting {
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError> {
        self.counts.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.load(keys).await
    }
    async fn commit_once(&self, token: &str, writes: Vec<Write>) -> Result<(), CommitError> {
        let counter = if writes.len() == 1 { &self.counts.single_writes } else { &self.counts.transactions };
        counter.fetch_add(1, Ordering::Relaxed);
        self.inner.commit_once(token, writes).await
    }
}

impl Counting {
    fn queried<T>(&self, page: Result<Page<T>, StoreError>) -> Result<Page<T>, StoreError> {
        self.counts.queries.fetch_add(1, Ordering::Relaxed);
        if let Ok(page) = &page {
            self.counts.items_read.fetch_add(page.scanned, Ordering::Relaxed);
        }
        page
    }
}

#[async_trait]
impl Queries for Counting {
    async fn users(&self, organization: &OrganizationId, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError> {
        self.queried(self.inner.users(organization, filter, page).await)
    }
    async fn audit(&self, query: &AuditQuery, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        self.queried(self.inner.audit(query, page).await)
    }
    async fn ledger(&self, organization: &OrganizationId, page: PageRequest) -> Result<Page<LedgerEntry>, StoreError> {
        self.queried(self.inner.ledger(organization, page).await)
    }
    async fn expiring(
        &self,
        partition: ExpiryPartition,
        until: Option<OffsetDateTime>,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError> {
        self.queried(self.inner.expiring(partition, until, page).await)
    }
    async fn undelivered(&self, shard: u8, due_by: OffsetDateTime, page: PageRequest) -> Result<Page<Result<User, BadItem>>, StoreError> {
        self.queried(self.inner.undelivered(shard, due_by, page).await)
    }
    async fn user_by_link_token(&self, sha256: &str) -> Result<Option<User>, StoreError> {
        self.inner.user_by_link_token(sha256).await
    }
    async fn users_with_contact(&self, organization: &OrganizationId, contact: &Contact) -> Result<Vec<User>, StoreError> {
        self.inner.users_with_contact(organization, contact).await
    }
}

async fn counted_world() -> (World, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    let world = World::with_ports(
        Backend::Embedded,
        Some(&move |inner: Arc<dyn Store>| Arc::new(Counting { inner, counts: shared.clone() }) as Arc<dyn Store>),
        None,
    )
    .await;
    (world, counts)
}

fn reset(counts: &Counts) {
    for counter in [&counts.reads, &counts.transactions, &counts.single_writes, &counts.queries, &counts.items_read] {
        counter.store(0, Ordering::Relaxed);
    }
}

fn read(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::Relaxed)
}

/// A user record made by the real use cases (subscribed in `world`), to copy.
pub(crate) async fn template_user(world: &World) -> User {
    let manager = PersonId::parse(&with_check_digit("100000001")).expect("valid");
    let organization = world.onboard("7009999999", PricingPlan::Muqeem, manager.as_str(), &[("1-10", SizeTier::Medium)]).await;
    world.credit(&organization, 10_000_000).await;
    let person = PersonId::parse(&with_check_digit("200000001")).expect("valid");
    world.active_user(&organization, &manager, &person, &["1-10"]).await
}

fn organization(n: usize) -> OrganizationId {
    OrganizationId::parse(&format!("7{:09}", n)).expect("valid")
}

pub(crate) fn person(n: usize) -> PersonId {
    PersonId::parse(&with_check_digit(&format!("2{:08}", n))).expect("valid")
}

pub struct SweepAtScale {
    pub seats: usize,
    pub organizations: usize,
    pub wall: Duration,
    /// Sweep runs, each given the Lambda's time: how many the day's work took.
    pub runs: usize,
    pub queries: usize,
    pub items_read: usize,
    pub transactions: usize,
    pub state_writes: usize,
    pub reads: usize,
    /// Writes the busiest index partition takes (each expiry removes its seat's entry), and
    /// the quietest, over the day's shards.
    pub busiest_partition: usize,
    pub quietest_partition: usize,
}

/// `seats` seats of `organizations` organizations end on one Saudi day, spread over it; the
/// sweep runs the next day (the days before are done).
pub async fn sweep(seats: usize, organizations: usize) -> SweepAtScale {
    let (world, counts) = counted_world().await;
    let template = template_user(&world).await;
    // A day no other seat of this world ends on.
    let end_day = saudi_day(START) + time::Duration::days(200);
    let day_start = start_of_saudi_day(end_day);
    let mut per_partition: BTreeMap<String, usize> = BTreeMap::new();
    let users = (0..seats).map(|n| {
        let mut user = template.clone();
        user.organization = organization(n % organizations);
        user.id = person(n);
        let seat = user.seat.as_mut().expect("a seat");
        seat.ends_at = day_start + time::Duration::milliseconds((86_400_000 * n / seats) as i64);
        seat.reminders_sent = domain::user::Reminder::ALL.into_iter().collect();
        let record = Record::User(user);
        *per_partition.entry(record.index_attributes().expiry_key.expect("indexed")).or_default() += 1;
        record
    });
    let embedded = world.embedded.clone().expect("an embedded world");
    embedded.load_directly(users);
    let now = day_start + time::Duration::days(1) + time::Duration::hours(1);
    let state = SweepState { version: 1, completed_through: Some(end_day), progress: None, retries: vec![], lease: None, updated_at: now };
    embedded.load_directly([Record::SweepState(state)]);
    reset(&counts);

    let started = Instant::now();
    let mut runs = 0;
    let mut expired = 0;
    loop {
        runs += 1;
        let meta = RequestMeta::new(Caller::Anonymous, format!("scale-{runs}")).with_deadline(Deadline::after(SWEEP_FUNCTION_TIMEOUT));
        let report = domain::actions::sweep::sweep(&world.env, &meta, now, SweepOptions::default()).await.expect("the sweep runs");
        assert_eq!(report.failed, 0, "{report:?}");
        expired += report.expired;
        if !report.stopped_early {
            break;
        }
    }
    let wall = started.elapsed();
    assert_eq!(expired, seats, "every seat expired");
    SweepAtScale {
        seats,
        organizations,
        wall,
        runs,
        queries: read(&counts.queries),
        items_read: read(&counts.items_read),
        transactions: read(&counts.transactions),
        state_writes: read(&counts.single_writes),
        reads: read(&counts.reads),
        busiest_partition: per_partition.values().copied().max().unwrap_or(0),
        quietest_partition: per_partition.values().copied().min().unwrap_or(0),
    }
}

pub struct ListingAtScale {
    pub filter: &'static str,
    pub matching: usize,
    pub requests: usize,
    pub most_read: usize,
    pub items_read: usize,
    pub empty_pages: usize,
}

/// One organization of `users` users; the listing pages through a filter that matches one
/// user in a hundred, then one that matches a single user, 50 a page.
pub async fn listing(users: usize) -> Vec<ListingAtScale> {
    let (world, counts) = counted_world().await;
    let template = template_user(&world).await;
    let org = organization(4242);
    let embedded = world.embedded.clone().expect("an embedded world");
    embedded.load_directly((0..users).map(|n| {
        let mut user = template.clone();
        user.organization = org.clone();
        user.id = person(n);
        if n % 100 == 7 {
            user.status = UserStatus::Suspended;
        }
        if n == users - 3 {
            user.job_title = Some("Chief of staff".into());
            user.name.en = Some("Haya Al-Otaibi".into());
        }
        Record::User(user)
    }));
    let mut measured = Vec::new();
    for (name, filter) in [
        ("status = suspended (1 in 100)", UserFilter { status: Some(UserStatus::Suspended), ..UserFilter::at(world.now()) }),
        (
            "search = one name (1 user)",
            UserFilter { search: Some(domain::search::normalize("haya al-otaibi")), ..UserFilter::at(world.now()) },
        ),
        ("no filter", UserFilter::at(world.now())),
    ] {
        reset(&counts);
        let mut page = PageRequest::first(50);
        let (mut requests, mut most_read, mut matching, mut empty_pages) = (0, 0, 0, 0);
        loop {
            let before = read(&counts.items_read);
            let listed = world.env.store.users(&org, &filter, page.clone()).await.expect("a page");
            requests += 1;
            most_read = most_read.max(read(&counts.items_read) - before);
            matching += listed.items.len();
            empty_pages += usize::from(listed.items.is_empty());
            match listed.next {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        assert!(most_read <= LISTING_READ_BUDGET.max(50));
        measured.push(ListingAtScale { filter: name, matching, requests, most_read, items_read: read(&counts.items_read), empty_pages });
    }
    measured
}
