//! An example plug-in on `kato-discovery-client`: a sidecar that writes its live configuration
//! to a file the app (or a proxy) reads, acknowledges every revision, and logs it.
//!
//! Default mode: long-polls `KATO_DISCOVERY_URL` and writes the discovery document. With
//! `--compat`, behaves like a Rainbond plug-in: polls `$DISCOVER_URL` every `--interval`
//! seconds and writes the ResourceSpec when it changed.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use kato_discovery_client::{AckStatus, Client, fetch_resource_spec};

#[derive(Parser)]
#[command(about = "Writes a Kato plug-in's live configuration to a file and acknowledges it")]
struct Args {
    /// Where the document is written (replaced atomically on each revision).
    #[arg(long, env = "SIDECAR_OUTPUT", default_value = "/tmp/kato/discovery.json")]
    output: PathBuf,
    /// The pod name reported in acks.
    #[arg(long, env = "HOSTNAME", default_value = "unknown")]
    pod: String,
    /// Read `$DISCOVER_URL` (Rainbond's ResourceSpec) by polling, as Rainbond plug-ins do.
    #[arg(long, env = "SIDECAR_COMPAT")]
    compat: bool,
    /// Seconds between polls in compat mode.
    #[arg(long, env = "SIDECAR_INTERVAL", default_value_t = 5)]
    interval: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let outcome = if args.compat {
        compat(&args).await
    } else {
        watch(&args).await
    };
    if let Err(e) = outcome {
        eprintln!("discovery-sidecar: {e}");
        std::process::exit(1);
    }
}

async fn watch(args: &Args) -> Result<(), kato_discovery_client::Error> {
    let client = Client::from_env()?;
    let mut watch = client.watch();
    loop {
        let doc = watch.next().await?;
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        match write_atomically(&args.output, &text).await {
            Ok(()) => {
                println!("revision {} applied: {}", doc.revision, args.output.display());
                report(&client, doc.revision, &args.pod, AckStatus::Applied, "").await;
            }
            Err(e) => {
                let message = format!("cannot write {}: {e}", args.output.display());
                eprintln!("revision {} rejected: {message}", doc.revision);
                report(&client, doc.revision, &args.pod, AckStatus::Rejected, &message).await;
            }
        }
    }
}

/// An ack that fails is logged, not fatal: the document is applied either way.
async fn report(client: &Client, revision: u64, pod: &str, status: AckStatus, message: &str) {
    if let Err(e) = client.ack(revision, pod, status, message).await {
        eprintln!("cannot acknowledge revision {revision}: {e}");
    }
}

async fn compat(args: &Args) -> Result<(), kato_discovery_client::Error> {
    let url = std::env::var("DISCOVER_URL").map_err(|_| kato_discovery_client::Error::MissingEnv("DISCOVER_URL"))?;
    let mut last = None;
    loop {
        match fetch_resource_spec(&url).await {
            Ok(spec) if last.as_ref() != Some(&spec) => {
                let text = serde_json::to_string_pretty(&spec).unwrap_or_default();
                match write_atomically(&args.output, &text).await {
                    Ok(()) => println!("resource spec changed: {}", args.output.display()),
                    Err(e) => eprintln!("cannot write {}: {e}", args.output.display()),
                }
                last = Some(spec);
            }
            Ok(_) => {}
            Err(e) => eprintln!("cannot fetch the resource spec: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
    }
}

/// Readers never see half a file: write beside it, then rename over it.
async fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, text).await?;
    tokio::fs::rename(&tmp, path).await
}
