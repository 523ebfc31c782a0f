//! `kato-perf`: watches the plug-in's discovery document, applies each revision live and acks
//! it; `--document FILE` serves one static document instead (benches and tests). SIGTERM
//! drains and exits 0.

use std::process::ExitCode;

use kato_discovery_client::{AckStatus, Client, Document};
use kato_perf::{Config, Perf, Rejection};

const USAGE: &str = "usage: kato-perf [--document FILE]

Kato's performance-analysis plug-in. In a pod it reads KATO_DISCOVERY_URL, KATO_DISCOVERY_TOKEN
and HOSTNAME, watches its discovery document and acks each revision. It needs CAP_NET_RAW.
  --document FILE   apply this static discovery document (JSON) instead; for benches and tests
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut document = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--document" => match args.next() {
                Some(f) => document = Some(f),
                None => return usage("--document needs a file"),
            },
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("kato-perf {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    tracing_subscriber::fmt().json().with_current_span(false).init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(document))
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("kato-perf: {problem}\n{USAGE}");
    ExitCode::from(2)
}

async fn run(document: Option<String>) -> ExitCode {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let client = match &document {
        Some(_) => None,
        None => match Client::from_env() {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the discovery document; pass --document FILE outside a pod");
                return ExitCode::from(2);
            }
        },
    };
    let mut perf = match Perf::start() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot capture");
            if let Some(client) = &client {
                // Say why in the component's status rather than only in a crash loop's logs.
                let pod = std::env::var("HOSTNAME").unwrap_or_default();
                if let Ok(doc) = client.fetch().await {
                    let _ = client
                        .ack(doc.revision, &pod, AckStatus::Rejected, &e.to_string())
                        .await;
                }
            }
            return ExitCode::FAILURE;
        }
    };
    match (document, client) {
        (Some(file), _) => {
            if let Err(message) = serve_file(&mut perf, &file).await {
                tracing::error!(%message, "document rejected");
                perf.drain().await;
                return ExitCode::FAILURE;
            }
            shutdown.await;
        }
        (None, Some(client)) => {
            let pod = std::env::var("HOSTNAME").unwrap_or_default();
            let apply = async |doc: &Document| apply(&mut perf, doc).await.map_err(|r| r.to_string());
            client.follow(&pod, apply, shutdown).await;
        }
        (None, None) => unreachable!("a client exists without --document"),
    }
    tracing::info!("shutting down: draining");
    perf.drain().await;
    tracing::info!("drained");
    ExitCode::SUCCESS
}

async fn serve_file(perf: &mut Perf, file: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let doc: Document = serde_json::from_str(&text).map_err(|e| format!("{file} is not a discovery document: {e}"))?;
    apply(perf, &doc).await.map(|_| ()).map_err(|r| r.to_string())
}

async fn apply(perf: &mut Perf, doc: &Document) -> Result<String, Rejection> {
    let config = Config::from_document(doc).inspect_err(|_| perf.note_rejection())?;
    let message = perf
        .apply(doc.revision, &config)
        .await
        .inspect_err(|_| perf.note_rejection())?;
    tracing::info!(revision = doc.revision, summary = %message, "applied");
    Ok(message)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
