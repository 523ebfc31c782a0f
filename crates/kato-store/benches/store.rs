//! Reading one plug-in draft by name, the store's half of `GET /teams/{team}/plugins/{plugin}`:
//! one task in a loop (latency), then many tasks at once on two worker threads (throughput).
//! The API target is ≥ 25,000 GETs/s on two cores with SQLite, auth and JSON included, so the
//! store should stay well above that.
//!
//! `cargo bench -p kato-store` measures SQLite; with `KATO_BENCH_DATABASE_URL=postgres://…`
//! it measures that database instead (its tables must not exist yet or be Kato's).

use std::hint::black_box;
use std::time::{Duration, Instant};

use kato_model::{PluginName, PluginSpec, TeamName};
use kato_store::Store;

const PER_SCENARIO: Duration = Duration::from_secs(2);

fn spec() -> PluginSpec {
    serde_json::from_value(serde_json::json!({
        "name": "mesh",
        "description": "governs calls to downstream components",
        "kind": "outbound-net",
        "source": {"image": "registry.example/platform/mesh:1.4"},
        "memory_mib": 128,
        "config_groups": [
            {"name": "base", "items": [
                {"name": "LOG_LEVEL", "type": "single", "options": ["debug", "info", "warn"], "default": "info"},
                {"name": "TRACING", "default": "off", "description": "send spans to the collector"}
            ]},
            {"name": "downstream", "meta": "downstream-port", "injection": "discovery", "items": [
                {"name": "TIMEOUT_MS", "default": "3000", "protocols": ["http", "grpc"]},
                {"name": "RETRIES", "default": "2"}
            ]}
        ]
    }))
    .unwrap()
}

async fn seeded(url: &str) -> (Store, TeamName, PluginName) {
    // A fixed key: a database an earlier run seeded opens again.
    let key = kato_store::SecretKey::from_bytes([7; 32]);
    let store = Store::open(url, kato_store::Keyring::new(key)).await.unwrap();
    let team: TeamName = "bench".parse().unwrap();
    let mut tx = store.begin().await.unwrap();
    if !tx.team_exists(&team).await.unwrap() {
        tx.create_team(&team).await.unwrap();
        for i in 0..50 {
            let mut other = spec();
            other.name = format!("other-{i}").parse().unwrap();
            tx.insert_plugin(&team, &other).await.unwrap();
        }
        tx.insert_plugin(&team, &spec()).await.unwrap();
    }
    tx.commit().await.unwrap();
    (store, team, spec().name)
}

async fn sequential(store: &Store, team: &TeamName, name: &PluginName) {
    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < PER_SCENARIO {
        for _ in 0..100 {
            black_box(store.get_plugin(team, name).await.unwrap().unwrap());
        }
        n += 100;
    }
    let per_op = start.elapsed() / n as u32;
    println!(
        "get_plugin, 1 task:   {:>7.1} µs/op  ({n} ops)",
        per_op.as_secs_f64() * 1e6
    );
}

async fn concurrent(store: &Store, team: &TeamName, name: &PluginName, tasks: usize) {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, team, name) = (store.clone(), team.clone(), name.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < PER_SCENARIO {
                    black_box(store.get_plugin(&team, &name).await.unwrap().unwrap());
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    println!("get_plugin, {tasks:>2} tasks: {rate:>9.0} ops/s");
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: do a quick smoke run only.
    let measure = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = std::env::var("KATO_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("kato.db").display()));
        let (store, team, name) = seeded(&url).await;
        if !measure {
            store.get_plugin(&team, &name).await.unwrap().unwrap();
            return;
        }
        println!("backend: {:?}", store.backend());
        sequential(&store, &team, &name).await;
        for tasks in [2, 8, 32] {
            concurrent(&store, &team, &name, tasks).await;
        }
        store.close().await;
    });
}
