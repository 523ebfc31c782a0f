//! `kato-mesh`: watches the plug-in's discovery document, applies each revision live and acks
//! it; `--document FILE` serves one static document instead (benches and tests). SIGTERM
//! drains and exits 0. `kato-mesh ready` answers the plug-in's probe from the state file the
//! running proxy keeps (see [`ready`]).

mod ready;

use std::process::ExitCode;

use kato_discovery_client::{Client, Document};
use kato_mesh::{Config, LogLevel, Mesh, Rejection};
use ready::ReadyFile;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Registry, reload};

const USAGE: &str = "usage: kato-mesh [--document FILE]
       kato-mesh ready

Kato's governance proxy plug-in. In a pod it reads KATO_DISCOVERY_URL, KATO_DISCOVERY_TOKEN,
KATO_TEAM and HOSTNAME, watches its discovery document and acks each revision.
  --document FILE   serve this static discovery document (JSON) instead; for benches and tests
  ready             exit 0 when the proxy of this container has applied a revision and is not
                    draining, 1 otherwise with the reason on stderr (the plug-in's probe); the
                    state file is /tmp/kato-mesh/ready, or $KATO_MESH_READY_FILE
";

type LevelHandle = reload::Handle<LevelFilter, Registry>;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "ready") {
        return match args.nth(1) {
            None => probe(&ReadyFile::from_env()),
            Some(extra) => usage(&format!("`ready` takes no argument, got `{extra}`")),
        };
    }
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
                println!("kato-mesh {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    let (filter, level) = reload::Layer::new(LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().json().with_current_span(false))
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(document, level))
}

/// `kato-mesh ready`: the exit status Kubernetes reads, the reason on stderr.
fn probe(file: &ReadyFile) -> ExitCode {
    match file.check() {
        Ok(revision) => {
            println!("ready: revision {revision} applied");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("kato-mesh: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("kato-mesh: {problem}\n{USAGE}");
    ExitCode::from(2)
}

async fn run(document: Option<String>, level: LevelHandle) -> ExitCode {
    let team = std::env::var("KATO_TEAM").unwrap_or_else(|_| {
        tracing::warn!("KATO_TEAM is not set: downstream names end in `.default`");
        "default".to_owned()
    });
    let ready = ReadyFile::from_env();
    // A file left by an earlier run in this writable layer (a restarted podman container)
    // must not answer for this one.
    if let Err(e) = ready.clear() {
        tracing::warn!(file = %ready.path().display(), error = %e, "cannot remove the old readiness file");
    }
    let proxy = Proxy {
        team: &team,
        level: &level,
        ready: &ready,
    };
    let mut mesh = Mesh::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let code = match document {
        Some(file) => match serve_file(&mut mesh, &file, &proxy).await {
            Ok(()) => {
                shutdown.await;
                ExitCode::SUCCESS
            }
            Err(message) => {
                tracing::error!(%message, "document rejected");
                return ExitCode::FAILURE;
            }
        },
        None => match Client::from_env() {
            Ok(client) => {
                let pod = std::env::var("HOSTNAME").unwrap_or_default();
                let apply = async |doc: &Document| apply(&mut mesh, doc, &proxy).await.map_err(|r| r.to_string());
                client.follow(&pod, apply, shutdown).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the discovery document; pass --document FILE outside a pod");
                return ExitCode::from(2);
            }
        },
    };
    tracing::info!("shutting down: draining");
    if let Err(e) = ready.clear() {
        tracing::warn!(file = %ready.path().display(), error = %e, "cannot remove the readiness file");
    }
    mesh.drain().await;
    tracing::info!("drained");
    code
}

/// What every applied revision needs besides the mesh.
struct Proxy<'a> {
    team: &'a str,
    level: &'a LevelHandle,
    ready: &'a ReadyFile,
}

async fn serve_file(mesh: &mut Mesh, file: &str, proxy: &Proxy<'_>) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let doc: Document = serde_json::from_str(&text).map_err(|e| format!("{file} is not a discovery document: {e}"))?;
    apply(mesh, &doc, proxy).await.map(|_| ()).map_err(|r| r.to_string())
}

/// Makes `doc` live; once it is (every listener bound), `kato-mesh ready` says so.
async fn apply(mesh: &mut Mesh, doc: &Document, proxy: &Proxy<'_>) -> Result<String, Rejection> {
    let config = Config::from_document(doc, proxy.team).inspect_err(|_| mesh.note_rejection())?;
    let log_level = config.base.log_level;
    let summary = mesh.apply(config).await?;
    let filter = match log_level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    };
    let _ = proxy.level.modify(|f| *f = filter);
    let message = summary.to_string();
    tracing::info!(revision = doc.revision, summary = %message, "applied");
    if let Err(e) = proxy.ready.mark_ready(doc.revision) {
        tracing::error!(file = %proxy.ready.path().display(), error = %e, "cannot write the readiness file: `kato-mesh ready` fails");
    }
    Ok(message)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
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
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
