//! Times `Resolver::resolve` of a tag against a local registry and prints p50/p90/max.
//!
//! `cargo bench -p kato-build` takes 300 samples; under `cargo test` it takes a few, as a smoke test.
//! The builds issue asks for pinning in under 300 ms at p50.

use std::time::{Duration, Instant};

use kato_build::{Resolver, ResolverConfig};
use kato_testkit::TestRegistry;

#[tokio::main]
async fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (warmup, samples) = if benching { (20, 300) } else { (1, 5) };
    let reg = TestRegistry::start().await;
    let pushed = reg.push_image("bench/app", "1").await;
    let resolver = Resolver::new(ResolverConfig::default());

    let started = Instant::now();
    resolver.resolve(&pushed.image).await.expect("first resolve");
    let first = started.elapsed();
    for _ in 0..warmup {
        resolver.resolve(&pushed.image).await.expect("resolve during warm-up");
    }
    let mut times: Vec<Duration> = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let pinned = resolver.resolve(&pushed.image).await.expect("resolve");
        times.push(started.elapsed());
        assert_eq!(pinned.digest, pushed.digest);
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "resolve a tag against a local registry: p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms ({samples} samples); \
         first call of a new Resolver {:.2} ms",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0)),
        ms(first),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
