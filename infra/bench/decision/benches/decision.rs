//! Criterion: our permission decision next to cedar-policy's over the same requests (see the
//! crate's documentation). Refuses to time engines that disagree.

use criterion::{Criterion, criterion_group, criterion_main};
use decision_bench::Fixture;

fn criterion_benchmark(c: &mut Criterion) {
    let fixture = Fixture::new();
    let allowed = fixture.agreement().unwrap_or_else(|disagreement| panic!("{disagreement}"));
    println!("{} requests, {allowed} allowed, both engines agree on every one", fixture.ours.len());

    let mut group = c.benchmark_group("decision");
    group.throughput(criterion::Throughput::Elements(fixture.ours.len() as u64));
    group.bench_function("ours", |b| b.iter(|| fixture.ours.iter().filter(|r| fixture.decide_ours(std::hint::black_box(r))).count()));
    group.bench_function("cedar", |b| b.iter(|| fixture.theirs.iter().filter(|r| fixture.decide_cedar(std::hint::black_box(r))).count()));
    group.finish();
}

criterion_group!(benches, criterion_benchmark);
criterion_main!(benches);
