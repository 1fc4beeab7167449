//! Change events on the emulator: the publish function's handler (in-process, with the
//! EventBridge adapter against moto's bus) after each of 100 balance credits, each committed
//! and then published as soon as its record is on the stream (the latency from the commit's
//! answer to the bus's), and the `PutEvents` calls 100 changes cost when Lambda hands them
//! over in batches of 50 (the template's `BatchSize`). Counted with moto's recorder.

use std::time::{Duration, Instant};

use domain::organization::{PricingPlan, SizeTier};
use system_tests::world::{Backend, World};

pub struct EventFigures {
    /// Commit answered → bus accepted, ms: (p50, p99).
    pub latency: (f64, f64),
    pub changes: usize,
    pub events: usize,
    /// `PutEvents` calls for 100 single-event changes, one publish per change.
    pub calls_unbatched: usize,
    /// … and handed over in batches of 50 records.
    pub calls_batched: usize,
    /// Events of one 24-person subscription.
    pub events_per_group: usize,
}

fn percentiles(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    (rank(0.50), rank(0.99))
}

pub async fn measure() -> EventFigures {
    let world = World::new(Backend::Moto).await;
    let manager = domain::identity::PersonId::parse(&domain::identity::with_check_digit("100000002")).expect("valid");
    let organization = world.onboard("7008888888", PricingPlan::Muqeem, manager.as_str(), &[("1-10", SizeTier::Medium)]).await;
    let config = world.moto().sdk_config().await;
    let names = world.dynamo.as_ref().expect("moto").names().clone();
    let bus_name = format!("bench{}", world.tag);
    let events_client = aws_sdk_eventbridge::Client::new(&config);
    events_client.create_event_bus().name(&bus_name).send().await.expect("a bus");
    let bus = aws_adapters::events::EventBridgeBus::new(aws_adapters::sdk::LazyClient::ready(events_client), bus_name.clone());
    let stream = local_api::deliverer::StreamReader::new(
        aws_sdk_dynamodbstreams::Client::new(&config),
        aws_sdk_dynamodb::Client::new(&config),
        names.outbox.clone(),
    );
    let meta = deliver_function::meta("bench-publish", domain::deadline::Deadline::unbounded());
    let publish = |records: Vec<aws_lambda_events::event::dynamodb::EventRecord>| {
        let mut event = aws_lambda_events::event::dynamodb::Event::default();
        event.records = records;
        let (bus, meta) = (&bus, &meta);
        async move {
            let answer = publish_function::handle(bus, event, meta).await;
            assert!(answer.batch_item_failures.is_empty(), "published");
        }
    };
    publish(stream.read().await.expect("the stream")).await; // what onboarding committed

    let moto = world.moto();
    let _recording = system_tests::moto::recording_lock().lock().await;
    moto.start_recording().await;
    let mut latencies = Vec::new();
    let mut events = 0;
    for _ in 0..100 {
        world.credit(&organization, 100).await;
        let committed = Instant::now();
        let records = loop {
            let records = stream.read().await.expect("the stream");
            if !records.is_empty() {
                break records;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        events += records.iter().filter_map(|r| deliver_function::intent_of(r).ok().flatten()).map(|i| i.events.len()).sum::<usize>();
        publish(records).await;
        latencies.push(committed.elapsed().as_secs_f64() * 1000.0);
    }
    let calls_unbatched = moto.recorded_targets(&bus_name).await.iter().filter(|t| t.ends_with("PutEvents")).count();

    moto.start_recording().await;
    for _ in 0..100 {
        world.credit(&organization, 100).await;
    }
    let records = stream.read().await.expect("the stream");
    for batch in records.chunks(50) {
        publish(batch.to_vec()).await;
    }
    let calls_batched = moto.recorded_targets(&bus_name).await.iter().filter(|t| t.ends_with("PutEvents")).count();

    // One change of many users: a 24-person subscription.
    world.credit(&organization, 10_000_000).await;
    let persons: Vec<_> = (0..domain::actions::subscribe::MAX_PERSONS_PER_REQUEST)
        .map(|n| domain::identity::PersonId::parse(&domain::identity::with_check_digit(&format!("2{:08}", 500 + n))).expect("valid"))
        .collect();
    for person in &persons {
        world.register(person.as_str(), &["1-10"], Some(500)).await;
    }
    stream.read().await.expect("the stream");
    let group = persons
        .iter()
        .map(|id| domain::actions::subscribe::SubscribePerson {
            id: id.clone(),
            establishments: std::collections::BTreeSet::from([domain::organization::EstablishmentId::parse("1-10").expect("valid")]),
            user_type: Some(domain::user::UserType::PartnersOnly),
            language: None,
            job_title: None,
        })
        .collect();
    world.subscribe(&manager, &organization, group, "bench-group").await;
    let records = stream.read().await.expect("the stream");
    let events_per_group = records.iter().filter_map(|r| deliver_function::intent_of(r).ok().flatten()).map(|i| i.events.len()).sum();
    EventFigures { latency: percentiles(latencies), changes: 100, events, calls_unbatched, calls_batched, events_per_group }
}
