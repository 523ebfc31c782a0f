//! What each subcommand does: build a request, call the server, print the answer.

mod components;
mod plugins;
mod runtime;
mod wait;

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{Apply, Cli, Command, CredentialCmd, Global, KeyArgs, RotateKey, Serve, TeamCmd, TokenCmd};
use crate::client::Client;
use crate::output::{Column, field, print};

pub async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Serve(s) => serve(g, s).await,
        Command::Doctor(s) => doctor(g, s).await,
        Command::Team(c) => team(g, c).await,
        Command::Token(c) => token(g, c).await,
        Command::Credential(c) => credential(g, c).await,
        Command::Plugin(c) => plugins::run(g, c).await,
        Command::Component(c) => components::run(g, c).await,
        Command::Install(i) => components::install(g, i).await,
        Command::Uninstall(t) => components::uninstall(g, t).await,
        Command::Enable(t) => components::switch(g, t, true).await,
        Command::Disable(t) => components::switch(g, t, false).await,
        Command::Upgrade(u) => components::upgrade(g, u).await,
        Command::RotateToken(t) => components::rotate_token(g, t).await,
        Command::Render(r) => components::render(g, r).await,
        Command::Apply(a) => apply(g, a).await,
        Command::Deploy(d) => runtime::deploy(g, d).await,
        Command::Stop(c) => runtime::stop(g, c).await,
        Command::Status(c) => runtime::status(g, c).await,
        Command::Logs(l) => runtime::logs(g, l).await,
        Command::RotateKey(r) => rotate_key(g, r).await,
    }
}

pub fn team_of(g: &Global) -> Result<&str> {
    g.team
        .as_deref()
        .ok_or_else(|| anyhow!("which team? give --team NAME or set KATO_TEAM"))
}

async fn serve(g: &Global, s: Serve) -> Result<()> {
    // Colours only for a terminal: logs sent to a file or a journal stay plain text.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KATO_LOG").unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let limits = kato_server::listener::Limits {
        header_timeout: s.header_timeout,
        idle_timeout: s.idle_timeout,
        max_connections: s.max_connections as usize,
    };
    kato_server::serve_app(
        server_config(g, s)?,
        limits,
        Some(kato_console::pages()),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// Prints each check; fails when one found something missing.
async fn doctor(g: &Global, s: Serve) -> Result<()> {
    let needs = kato_server::doctor::Needs::of(&server_config(g, s)?);
    let checks = kato_server::doctor::check(&needs).await;
    if g.output != crate::cli::Format::Table {
        print(&serde_json::to_value(&checks)?, g.output, &[]);
    } else {
        for c in &checks {
            let mark = if c.ok { "ok     " } else { "MISSING" };
            println!("{mark} {:<18} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("        {:<18} fix: {fix}", "");
            }
        }
    }
    let missing = checks.iter().filter(|c| !c.ok).count();
    if missing > 0 {
        bail!(
            "{missing} of {} checks found something missing (target {})",
            checks.len(),
            needs.target
        );
    }
    Ok(())
}

fn key_source(k: &KeyArgs) -> kato_server::SecretKeySource {
    match (&k.secret_key, &k.secret_key_file) {
        (Some(key), _) => kato_server::SecretKeySource::Value(key.clone()),
        (None, Some(file)) => kato_server::SecretKeySource::File(file.clone()),
        (None, None) => kato_server::SecretKeySource::DataDir,
    }
}

/// `kato rotate-key`: works on the database and the key file directly, not through a server.
async fn rotate_key(g: &Global, r: RotateKey) -> Result<()> {
    let data_dir = kato_server::resolve_data_dir(&g.data_dir)?;
    let url = match &r.database_url {
        Some(url) => url.clone(),
        None => kato_server::sqlite_url(&data_dir),
    };
    let done = kato_server::secret_key::rotate(&url, &key_source(&r.key), &data_dir).await?;
    println!(
        "re-sealed {} secret values with key {} (was {}); the new key is in {}",
        done.values,
        done.new_key,
        done.old_key,
        done.file.display()
    );
    if r.database_url.is_some() || r.key.secret_key_file.is_some() {
        println!("give every server on this database the new key before starting it again");
    }
    Ok(())
}

/// The server's configuration from `kato serve`'s flags.
fn server_config(g: &Global, s: Serve) -> Result<kato_server::Config> {
    let registry = match &s.registry {
        Some(r) => {
            let mut r: kato_server::builds::PlatformRegistry = r.parse()?;
            r.username = s.registry_username.clone();
            r.password = s.registry_password.clone();
            Some(r)
        }
        None => None,
    };
    Ok(kato_server::Config {
        data_dir: g.data_dir.clone(),
        listen: s.listen,
        database_url: s.database_url,
        public_url: s.public_url,
        target: s.target.map(|t| match t {
            crate::cli::TargetArg::Podman => kato_server::TargetKind::Podman,
            crate::cli::TargetArg::Kubernetes => kato_server::TargetKind::Kubernetes,
            crate::cli::TargetArg::None => kato_server::TargetKind::None,
        }),
        kubeconfig: s.kubeconfig,
        builds: kato_server::builds::BuildSettings {
            concurrency: usize::from(s.build_concurrency),
            timeout: s.build_timeout,
            lease: s.build_lease,
            registry,
            local_registry: match s.local_registry.as_str() {
                "off" => None,
                a => Some(a.parse().map_err(|_| {
                    anyhow::anyhow!("--local-registry `{a}`: give a loopback address such as 127.0.0.1:7071, or `off`")
                })?),
            },
            allow_local_repos: s.allow_local_repos,
            defaults: s.defaults_repo.map(|repo| kato_server::catalog::DefaultsRepo {
                repo,
                git_ref: s.defaults_ref,
            }),
            ..Default::default()
        },
        secret_key: key_source(&s.key),
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

const NAME: Column = ("NAME", |v| field(v, "name"));
const CREATED: Column = ("CREATED", |v| field(v, "created_at"));

async fn team(g: &Global, c: TeamCmd) -> Result<()> {
    let client = Client::new(g)?;
    let v = match c {
        TeamCmd::Create { name } => {
            client
                .call(Method::POST, "/teams", Some(&json!({"name": name})))
                .await?
        }
        TeamCmd::List => client.get("/teams").await?,
    };
    print(&v, g.output, &[NAME, CREATED]);
    Ok(())
}

async fn credential(g: &Global, c: CredentialCmd) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let cols: [Column; 3] = [
        ("HOST", |v| field(v, "host")),
        ("USERNAME", |v| field(v, "username")),
        CREATED,
    ];
    let base = format!("/teams/{team}/credentials");
    match c {
        CredentialCmd::Set {
            host,
            username,
            ssh_key: Some(key),
            known_hosts: Some(known),
        } => {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
            };
            let body =
                json!({"host": host, "username": username, "ssh_key": read(&key)?, "known_hosts": read(&known)?});
            print(&client.call(Method::POST, &base, Some(&body)).await?, g.output, &cols);
        }
        CredentialCmd::Set { host, username, .. } => {
            let password = match std::env::var("KATO_CREDENTIAL_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            let body = json!({"host": host, "username": username, "password": password});
            print(&client.call(Method::POST, &base, Some(&body)).await?, g.output, &cols);
        }
        CredentialCmd::List => print(&client.get(&base).await?, g.output, &cols),
        CredentialCmd::Delete { host } => {
            client.call(Method::DELETE, &format!("{base}/{host}"), None).await?;
            eprintln!("credential for {host} deleted");
        }
    }
    Ok(())
}

async fn token(g: &Global, c: TokenCmd) -> Result<()> {
    let client = Client::new(g)?;
    let team = team_of(g)?;
    let cols: [Column; 3] = [("ID", |v| field(v, "id")), NAME, CREATED];
    match c {
        TokenCmd::Create { name } => {
            let body = json!({"name": name});
            let v = client
                .call(Method::POST, &format!("/teams/{team}/tokens"), Some(&body))
                .await?;
            print(
                &v,
                g.output,
                &[
                    ("ID", |v| field(v, "id")),
                    NAME,
                    ("TOKEN (shown once)", |v| field(v, "token")),
                ],
            );
        }
        TokenCmd::List => print(&client.get(&format!("/teams/{team}/tokens")).await?, g.output, &cols),
        TokenCmd::Delete { id } => {
            client
                .call(Method::DELETE, &format!("/teams/{team}/tokens/{id}"), None)
                .await?;
            eprintln!("token {id} deleted");
        }
    }
    Ok(())
}

/// What a plug-in's pods reported applying, in one cell: `POD applied N`, then the revisions
/// it rejected since with their messages; `-` when no pod reported yet.
pub fn acks_summary(pods: &Value) -> String {
    let pods = pods.as_array().map(Vec::as_slice).unwrap_or_default();
    if pods.is_empty() {
        return "-".into();
    }
    pods.iter()
        .map(|p| {
            let mut cell = format!("{} applied {}", field(p, "pod"), field(p, "applied_revision"));
            let rejected = rejections(p);
            if rejected != "-" {
                cell.push_str(&format!(", rejected {rejected}"));
            }
            cell
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A pod's rejected revisions with their messages: `7 (LEVEL nonsense is unknown), 8 (…)`.
pub fn rejections(pod: &Value) -> String {
    let list = pod["rejected"].as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return "-".into();
    }
    list.iter()
        .map(|r| match r["message"].as_str().filter(|m| !m.is_empty()) {
            Some(m) => format!("{} ({m})", field(r, "revision")),
            None => field(r, "revision"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads YAML or JSON documents from a file (`-` for standard input).
pub fn read_documents(path: &Path) -> Result<Vec<Value>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let v: Value = serde::Deserialize::deserialize(doc)
            .with_context(|| format!("{}: document {} is not valid YAML", path.display(), i + 1))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    if docs.is_empty() {
        bail!("{} holds no documents", path.display());
    }
    Ok(docs)
}

async fn apply(g: &Global, a: Apply) -> Result<()> {
    let client = Client::new(g)?;
    let mut documents = Vec::new();
    for f in &a.file {
        documents.extend(read_documents(f)?);
    }
    let team = match g.team.as_deref() {
        Some(t) => t.to_owned(),
        None => documents
            .iter()
            .find_map(|d| d["metadata"]["team"].as_str().map(str::to_owned))
            .ok_or_else(|| {
                anyhow!("which team? give --team NAME, set KATO_TEAM, or put `team:` in the documents' metadata")
            })?,
    };
    let v = client
        .call(
            Method::POST,
            &format!("/teams/{team}/apply"),
            Some(&json!({"documents": documents})),
        )
        .await?;
    print(
        &v,
        g.output,
        &[("KIND", |v| field(v, "kind")), NAME, ("ACTION", |v| field(v, "action"))],
    );
    Ok(())
}
