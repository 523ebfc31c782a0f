//! `kato`: the server (`kato serve`) and the command line that talks to it.
#![forbid(unsafe_code)]

mod cli;
mod client;
mod commands;
mod output;

use clap::Parser;

#[tokio::main]
async fn main() {
    let args = cli::Cli::parse();
    if let Err(e) = commands::run(args).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
