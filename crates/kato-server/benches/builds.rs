//! Build figures for BENCHMARKS.md, against real parts (local registries, git, podman):
//!
//! 1. an `image`-source version of a ~5 MB image: pinned and copied into the platform registry
//!    through the API (p50/p90 over fresh repositories, so every blob is sent);
//! 2. Kato's overhead over the builder alone for a one-`RUN` Dockerfile: the API path (queue,
//!    git clone, build, push, stored log) against `podman build` + `podman push` run directly,
//!    in interleaved pairs, with each phase of Kato's path from its stored log's timestamps;
//! 3. 20 build requests at once with a limit of 2: the most ever running, and all finished
//!    (`KATO_BENCH_BURSTS=N` repeats it N times; a failed build prints its log).
//!
//! `cargo bench -p kato-server --bench builds`; under `cargo test` it runs a few samples.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use kato_server::builds::BuildSettings;
use kato_testkit::{GitRepo, TestRegistry, base_image, containers_conf};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower::ServiceExt;

struct Api {
    router: Router,
    admin: String,
    state: Arc<kato_server::AppState>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start(platform: &TestRegistry, concurrency: usize) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let config = kato_server::Config {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:7070".parse().unwrap(),
            database_url: None,
            public_url: None,
            target: Some(kato_server::TargetKind::None),
            kubeconfig: None,
            builds: BuildSettings {
                concurrency,
                registry: Some(platform.host().parse().unwrap()),
                ..BuildSettings::default()
            },
            secret_key: Default::default(),
        };
        let (state, token) = kato_server::prepare(&config).await.unwrap();
        tokio::spawn(kato_server::builds::run_worker(
            state.clone(),
            kato_build::CancellationToken::new(),
        ));
        let api = Api {
            router: kato_server::router(state.clone()),
            admin: std::fs::read_to_string(token).unwrap().trim().to_owned(),
            state,
            _dir: dir,
        };
        api.call(Method::POST, "/teams", Some(json!({"name": "bench"}))).await;
        api
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header("authorization", format!("Bearer {}", self.admin));
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let res = self.router.clone().oneshot(req).await.unwrap();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// The stored build log: `(time, line)` pairs.
    async fn log(&self, plugin: &str, n: u64) -> Vec<(OffsetDateTime, String)> {
        let req = Request::builder()
            .uri(format!("/api/v1/teams/bench/plugins/{plugin}/versions/{n}/log"))
            .header("authorization", format!("Bearer {}", self.admin))
            .body(Body::empty())
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| {
                let (at, line) = l.split_once(' ')?;
                Some((OffsetDateTime::parse(at, &Rfc3339).ok()?, line.to_owned()))
            })
            .collect()
    }

    /// Waits for the build's end by following its log, as `kato plugin build --follow` does:
    /// no requests while it runs (polling the API would take CPU from the build it measures).
    async fn wait(&self, plugin: &str, n: u64) -> Value {
        let req = Request::builder()
            .uri(format!(
                "/api/v1/teams/bench/plugins/{plugin}/versions/{n}/log?follow=true"
            ))
            .header("authorization", format!("Bearer {}", self.admin))
            .body(Body::empty())
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        tokio::time::timeout(Duration::from_secs(600), res.into_body().collect())
            .await
            .expect("the build ends within 10 minutes")
            .unwrap();
        // The log ends with the build; its status is recorded at the same time.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self
                .call(
                    Method::GET,
                    &format!("/teams/bench/plugins/{plugin}/versions/{n}"),
                    None,
                )
                .await;
            if !matches!(v["status"].as_str(), Some("queued" | "building")) {
                return v;
            }
            assert!(Instant::now() < deadline, "the log ended but the build did not: {v}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn podman(args: &[&str]) {
    let out = Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms ({} samples)",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0)),
        times.len()
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The phases of a build through Kato, between the log lines that mark them.
const PHASES: [&str; 7] = [
    "request to the worker's first line (queue, claim)",
    "git clone and ref lookup",
    "git checkout",
    "podman build",
    "podman push",
    "push to the last stored line",
    "last stored line to the status seen (record, log end)",
];

/// How long each of [`PHASES`] took in one build's log.
fn breakdown(posted: OffsetDateTime, log: &[(OffsetDateTime, String)], seen: OffsetDateTime) -> Vec<Duration> {
    let at = |prefix: &str| {
        log.iter()
            .find(|(_, l)| l.starts_with(prefix))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no `{prefix}` line in {log:?}"))
    };
    let marks = [
        posted,
        at("building version"),
        at("checking out"),
        at("building Dockerfile"),
        at("pushing "),
        at("pushed "),
        log.last().map(|(t, _)| *t).unwrap(),
        seen,
    ];
    marks
        .windows(2)
        .map(|w| Duration::try_from(w[1] - w[0]).unwrap_or_default())
        .collect()
}

/// `podman build` and `podman push` of a fresh one-RUN Dockerfile, run directly: how long each took.
fn build_alone(platform: &TestRegistry, i: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {}\nRUN echo alone-{i}-{}\n", base_image(), std::process::id()),
    )
    .unwrap();
    let target = format!("{}/bench/alone:v{i}", platform.host());
    let started = Instant::now();
    podman(&["build", "--quiet", "-t", &target, dir.path().to_str().unwrap()]);
    let built = started.elapsed();
    let pushing = Instant::now();
    podman(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        &target,
        &format!("docker://{target}"),
    ]);
    (built, pushing.elapsed())
}

#[tokio::main]
async fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (copies, builds) = if benching { (30, 15) } else { (2, 1) };
    let source = TestRegistry::start().await;
    let platform = TestRegistry::start().await;

    // 1. A ~5 MB image in a vendor registry, copied per version into the platform registry.
    let ctx = tempfile::tempdir().unwrap();
    let noise: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(ctx.path().join("blob"), noise).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {}\nCOPY blob /blob\n", base_image()),
    )
    .unwrap();
    let tag = format!("{}/vendor/five-mb:1", source.host());
    podman(&["build", "--quiet", "-t", &tag, ctx.path().to_str().unwrap()]);
    podman(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        &tag,
        &format!("docker://{tag}"),
    ]);
    let api = Api::start(&platform, 2).await;
    let mut times = Vec::new();
    for i in 0..copies {
        let name = format!("copy{i}");
        api.call(
            Method::POST,
            "/teams/bench/plugins",
            Some(json!({"name": name, "kind": "general", "source": {"image": tag}})),
        )
        .await;
        let started = Instant::now();
        let v = api
            .call(Method::POST, &format!("/teams/bench/plugins/{name}/versions"), None)
            .await;
        times.push(started.elapsed());
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    println!(
        "image-source version, ~5 MB image pinned and copied: {}",
        summary(&mut times)
    );

    // 2. One-RUN Dockerfile: the builder alone and through Kato, in pairs (the order swapped
    //    every pair), so that both see the same load on a shared machine.
    let repo = GitRepo::new();
    api.call(
        Method::POST,
        "/teams/bench/plugins",
        Some(json!({"name": "built", "kind": "general", "source": {"dockerfile": {"repo": repo.url()}}})),
    )
    .await;
    let (mut alone, mut alone_build, mut alone_push) = (Vec::new(), Vec::new(), Vec::new());
    let mut through = Vec::new();
    let mut paired = Vec::new();
    let mut phases: Vec<Vec<Duration>> = vec![Vec::new(); PHASES.len()];
    for i in 0..builds {
        let mut pair = [Duration::ZERO; 2];
        for side in [i % 2, 1 - i % 2] {
            if side == 0 {
                let (b, p) = build_alone(&platform, i);
                alone_build.push(b);
                alone_push.push(p);
                pair[0] = b + p;
                alone.push(b + p);
                continue;
            }
            repo.write(
                "Dockerfile",
                &format!("FROM {}\nRUN echo kato-{i}-{}\n", base_image(), std::process::id()),
            );
            repo.commit("next");
            let started = Instant::now();
            let posted = OffsetDateTime::now_utc();
            let v = api
                .call(Method::POST, "/teams/bench/plugins/built/versions", None)
                .await;
            let n = v["number"].as_u64().unwrap();
            let v = api.wait("built", n).await;
            pair[1] = started.elapsed();
            through.push(pair[1]);
            let seen = OffsetDateTime::now_utc();
            assert_eq!(v["status"], "succeeded", "{v}");
            let log = api.log("built", n).await;
            for (k, d) in breakdown(posted, &log, seen).into_iter().enumerate() {
                phases[k].push(d);
            }
        }
        paired.push(ms(pair[1]) - ms(pair[0]));
    }
    paired.sort_by(f64::total_cmp);
    let (a, k) = (summary(&mut alone), summary(&mut through));
    let p50 = |t: &[Duration]| t[(t.len() - 1) / 2];
    let overhead = ms(p50(&through)) - ms(p50(&alone));
    println!("one-RUN Dockerfile, podman build + push alone: {a}");
    println!("  of which podman build: {}", summary(&mut alone_build));
    println!("  of which podman push: {}", summary(&mut alone_push));
    println!("one-RUN Dockerfile through Kato (queue, clone, build, push, log): {k}");
    println!(
        "Kato overhead at p50: {overhead:.1} ms ({:.1} % of the wall time)",
        overhead / ms(p50(&through)) * 100.0
    );
    let median_pair = paired[(paired.len() - 1) / 2];
    println!(
        "Kato overhead, median of the pairs' differences: {median_pair:.1} ms ({:.1} % of the wall time)",
        median_pair / ms(p50(&through)) * 100.0
    );
    println!("through Kato, by phase (p50 of each, from the stored log's timestamps):");
    for (name, times) in PHASES.iter().zip(&mut phases) {
        times.sort();
        println!("  {name}: {:.1} ms", ms(p50(times)));
    }

    // 3. 20 requests at once, limit 2 (`KATO_BENCH_BURSTS` times, a new plug-in each time).
    let api = Arc::new(Api::start(&platform, 2).await);
    let bursts: usize = std::env::var("KATO_BENCH_BURSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut failed = 0;
    for burst in 0..bursts {
        let name = format!("many-{burst}");
        let repo = GitRepo::new();
        repo.write("Dockerfile", &format!("FROM {}\nRUN echo many\n", base_image()));
        repo.commit("many");
        api.call(
            Method::POST,
            "/teams/bench/plugins",
            Some(json!({"name": name, "kind": "general", "source": {"dockerfile": {"repo": repo.url()}}})),
        )
        .await;
        let started = Instant::now();
        let requests: Vec<_> = (0..20)
            .map(|_| {
                let (api, name) = (api.clone(), name.clone());
                tokio::spawn(async move {
                    api.call(Method::POST, &format!("/teams/bench/plugins/{name}/versions"), None)
                        .await
                })
            })
            .collect();
        for r in requests {
            r.await.unwrap();
        }
        let mut succeeded = 0;
        for n in 1..=20 {
            let v = api.wait(&name, n).await;
            if v["status"] == "succeeded" {
                succeeded += 1;
            } else {
                println!("version {n} of {name}: {} ({})", v["status"], v["error"]);
                for (_, line) in api.log(&name, n).await {
                    println!("  | {line}");
                }
            }
        }
        failed += 20 - succeeded;
        println!(
            "20 build requests at once, limit 2: {succeeded}/20 succeeded, at most {} running, {:.1} s in all",
            api.state.builds.peak_running.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
    }
    let peak = api.state.builds.peak_running.load(Ordering::Relaxed);
    assert!(peak <= 2 && failed == 0, "at most {peak} running, {failed} failed");
}
