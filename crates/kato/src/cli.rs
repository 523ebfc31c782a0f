//! The command line: every flag also reads an environment variable where one makes sense.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "kato",
    version,
    about = "Plug-ins for components: define, version, install, render"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The Kato server to talk to.
    #[arg(long, global = true, env = "KATO_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// API token; defaults to the admin token in the local data dir.
    #[arg(long, global = true, env = "KATO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The team to work in.
    #[arg(long, short = 't', global = true, env = "KATO_TEAM")]
    pub team: Option<String>,
    /// The server's data dir (for `serve`, and where the CLI finds the admin token).
    #[arg(long, global = true, env = "KATO_DATA_DIR", default_value = "./kato-data")]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(Serve),
    /// Check what `kato serve` with these flags needs from this machine, and print the fix for
    /// each missing part (exits non-zero when something is missing).
    Doctor(Serve),
    /// Teams (admin).
    #[command(subcommand)]
    Team(TeamCmd),
    /// API tokens of a team.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Plug-ins and their versions.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// The team's credentials for private registries and git hosts.
    #[command(subcommand)]
    Credential(CredentialCmd),
    /// Components (applications).
    #[command(subcommand)]
    Component(ComponentCmd),
    /// Install a plug-in on a component, or change its installation.
    Install(Install),
    /// Remove a plug-in from a component.
    Uninstall(Target2),
    /// Switch an installed plug-in on.
    Enable(Target2),
    /// Switch an installed plug-in off (its values are kept).
    Disable(Target2),
    /// Move an installation to another version (the newest succeeded one by default).
    Upgrade(Upgrade),
    /// Give an installed plug-in a new discovery token: the old one stops working at once, and
    /// a deployed component is redeployed so its pods get the new one.
    RotateToken(Target2),
    /// Print the objects a component renders to.
    Render(Render),
    /// Create or update plug-ins and components from YAML documents.
    Apply(Apply),
    /// Run a component with its plug-ins on the server's target; changes redeploy it. Exits
    /// non-zero when the deploy failed or a container cannot run.
    Deploy(Deploy),
    /// Stop a component: remove everything it runs.
    Stop(ComponentArg),
    /// The component's state, pods and containers (app and plug-ins). Exits non-zero when the
    /// component has failed: state `failed`, a container that cannot run, or a failed last deploy.
    Status(ComponentArg),
    /// A container's logs: the app's by default, a plug-in's with `-c plugin-NAME`.
    Logs(Logs),
    /// Seal every secret in the store with a new key, in one transaction, and replace the key
    /// file. Run it while no server uses the database, then give every server the new key.
    RotateKey(RotateKey),
}

/// The key secrets are sealed with in the store.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// A file holding the key (base64 of 32 bytes; created if missing). Every server on one
    /// database needs the same key. Without it, `secrets.key` in the data dir.
    #[arg(long, env = "KATO_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// The key itself, in base64 (prefer the environment variable).
    #[arg(
        long,
        env = "KATO_SECRET_KEY",
        hide_env_values = true,
        conflicts_with = "secret_key_file"
    )]
    pub secret_key: Option<String>,
}

#[derive(Args, Debug)]
pub struct RotateKey {
    /// PostgreSQL URL (postgres://…); SQLite in the data dir when absent.
    #[arg(long, env = "KATO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Args, Debug)]
pub struct ComponentArg {
    pub component: String,
}

#[derive(Args, Debug)]
pub struct Deploy {
    pub component: String,
    /// Wait until the component runs with every container running (exit 0), or has failed or
    /// --timeout passed (non-zero, with the reason); progress lines go to stderr.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (`90s`, `5m`, `1h`).
    #[arg(long, default_value = "5m", value_parser = parse_duration, requires = "wait")]
    pub timeout: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct Logs {
    pub component: String,
    /// The container: the component's name (default) or `plugin-NAME`.
    #[arg(long, short = 'c')]
    pub container: Option<String>,
    /// Keep printing new lines.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<u32>,
}

/// Where `kato serve` runs components.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetArg {
    /// The local podman engine.
    Podman,
    /// A Kubernetes cluster.
    Kubernetes,
    /// Render only: deploy, stop and logs are refused.
    None,
}

#[derive(Args, Debug)]
pub struct Serve {
    /// Address to listen on.
    #[arg(long, env = "KATO_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// PostgreSQL URL (postgres://…); SQLite in the data dir when absent.
    #[arg(long, env = "KATO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The URL plug-in containers use to reach this server (discovery API).
    #[arg(long, env = "KATO_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Where components run: podman when it is installed, else none (render only).
    #[arg(long, env = "KATO_TARGET", value_enum)]
    pub target: Option<TargetArg>,
    /// The kubeconfig of the kubernetes target; else KUBECONFIG, ~/.kube/config or in-cluster.
    #[arg(long, env = "KATO_KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The platform registry, HOST[:PORT][/namespace]: built images are pushed there. Reached
    /// over HTTPS; plain HTTP only on loopback.
    #[arg(long, env = "KATO_REGISTRY")]
    pub registry: Option<String>,
    /// The platform registry's username.
    #[arg(long, env = "KATO_REGISTRY_USERNAME", requires = "registry")]
    pub registry_username: Option<String>,
    /// The platform registry's password (prefer the environment variable).
    #[arg(
        long,
        env = "KATO_REGISTRY_PASSWORD",
        hide_env_values = true,
        requires = "registry_username"
    )]
    pub registry_password: Option<String>,
    /// Without --registry: run Debian's docker-registry on this loopback address as the
    /// platform registry, storing in the data dir (`off`: no registry, no Dockerfile builds).
    #[arg(long, env = "KATO_LOCAL_REGISTRY", default_value = "127.0.0.1:7071")]
    pub local_registry: String,
    /// Builds this server runs at once.
    #[arg(long, env = "KATO_BUILD_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub build_concurrency: u16,
    /// A build still running after this long is stopped and fails (`90s`, `15m`, `1h`).
    #[arg(long, env = "KATO_BUILD_TIMEOUT", default_value = "15m", value_parser = parse_duration)]
    pub build_timeout: std::time::Duration,
    /// How long a server's claim on a build holds without renewal: after it, another server
    /// fails the build of a server that died.
    #[arg(long, env = "KATO_BUILD_LEASE", default_value = "30s", value_parser = parse_duration, hide = true)]
    pub build_lease: std::time::Duration,
    /// Let team tokens build from directories on this server and file:// repos (the admin
    /// token always may). Off by default: such a repo reads the server's own disk.
    #[arg(long, env = "KATO_ALLOW_LOCAL_REPOS")]
    pub allow_local_repos: bool,
    /// The git repo (a URL, or a directory on this server) the default plug-in catalog is
    /// built from (`kato plugin install-defaults`); `scripts/defaults` stages one offline.
    #[arg(long, env = "KATO_DEFAULTS_REPO")]
    pub defaults_repo: Option<String>,
    /// The branch, tag or commit of --defaults-repo to build (its default branch when absent).
    #[arg(long, env = "KATO_DEFAULTS_REF", requires = "defaults_repo")]
    pub defaults_ref: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Connections held open at once (API and discovery together); one more is answered 503.
    #[arg(long, env = "KATO_MAX_CONNECTIONS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// A request head must arrive whole within this, or the connection is closed.
    #[arg(long, env = "KATO_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: std::time::Duration,
    /// How long a connection may wait for its next request (a long-poll's wait is not idle).
    #[arg(long, env = "KATO_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: std::time::Duration,
}

/// `90`, `90s`, `15m`, `1h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: write e.g. 90s, 15m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{s}` is not a duration: write e.g. 90s, 15m or 1h")),
    };
    if secs == 0 {
        return Err("a duration must be more than zero".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Subcommand, Debug)]
pub enum TeamCmd {
    Create { name: String },
    List,
}

#[derive(Subcommand, Debug)]
pub enum CredentialCmd {
    /// Set the credential for a registry or git host (the password is read from
    /// KATO_CREDENTIAL_PASSWORD, or from stdin).
    Set {
        /// As in image references (`registry.example.com:5000`) or git URLs.
        host: String,
        /// The user (for an SSH key: the user to log in as when the repo URL names none).
        #[arg(long, required_unless_present = "ssh_key", default_value = "")]
        username: String,
        /// For ssh repos on HOST: a file with the SSH private key to clone with (no password
        /// is read then).
        #[arg(long, requires = "known_hosts")]
        ssh_key: Option<PathBuf>,
        /// With --ssh-key: a file with HOST's known_hosts line(s) (`ssh-keyscan HOST`, checked).
        #[arg(long, requires = "ssh_key")]
        known_hosts: Option<PathBuf>,
    },
    /// List hosts and users (passwords are never shown).
    List,
    Delete {
        host: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token; it is printed once.
    Create {
        #[arg(long)]
        name: Option<String>,
    },
    List,
    Delete {
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum PluginCmd {
    /// Create a plug-in from a YAML/JSON file or from flags.
    Create(PluginFields),
    /// Change a plug-in's draft (flags, or a merge-patch file).
    Update(PluginFields),
    List,
    Get {
        name: String,
    },
    /// Delete a plug-in; `--force` uninstalls it everywhere first.
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Freeze the draft into a new version and build it.
    Build {
        name: String,
        /// Show the build log as it happens; exit non-zero unless the build succeeds.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Stop a queued or running build; the version becomes `cancelled`.
    Cancel {
        name: String,
        number: u32,
    },
    /// Print a version's build log (`-f`: follow it until the build ends).
    Log {
        name: String,
        number: u32,
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// List a plug-in's versions.
    Versions {
        name: String,
    },
    /// Show one version.
    Version {
        name: String,
        number: u32,
    },
    /// Delete a version that no component uses.
    DeleteVersion {
        name: String,
        number: u32,
    },
    /// Create the team's default plug-ins (the governance proxy as inbound-net, outbound-net
    /// and inout-net, and the logtail log collector) and build them; plug-ins the team has
    /// already are kept. Needs a server started with --defaults-repo.
    InstallDefaults,
}

#[derive(Args, Debug)]
pub struct PluginFields {
    /// The plug-in's name (or take it from the file).
    pub name: Option<String>,
    /// A YAML or JSON file with the plug-in (create) or the fields to change (update).
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// inbound-net, outbound-net, inout-net, perf-analysis, init or general.
    #[arg(long)]
    pub kind: Option<String>,
    /// Build from this image.
    #[arg(long, conflicts_with = "repo")]
    pub image: Option<String>,
    /// Build from a Dockerfile in this git repo (https or ssh URL, file:// URL or directory).
    #[arg(long)]
    pub repo: Option<String>,
    /// The branch, tag or commit to build (with --repo; the default branch when absent).
    #[arg(long = "ref", requires = "repo")]
    pub git_ref: Option<String>,
    /// The Dockerfile's path in the repo (with --repo; `Dockerfile` when absent).
    #[arg(long, requires = "repo")]
    pub dockerfile: Option<String>,
    /// Minimum memory of the plug-in container, MiB.
    #[arg(long)]
    pub memory: Option<u32>,
    #[arg(long)]
    pub description: Option<String>,
    /// Command, run through /bin/sh -c.
    #[arg(long)]
    pub command: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ComponentCmd {
    /// Create (or replace, with --replace) a component from a file or flags.
    Create(ComponentFields),
    List,
    Get {
        name: String,
    },
    Delete {
        name: String,
    },
    /// The plug-ins installed on a component.
    Plugins {
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct ComponentFields {
    pub name: Option<String>,
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    #[arg(long)]
    pub image: Option<String>,
    /// The app's command, run through /bin/sh -c (the image's when absent).
    #[arg(long)]
    pub command: Option<String>,
    /// PORT[/PROTOCOL], repeatable (e.g. 8080/http).
    #[arg(long = "port")]
    pub ports: Vec<String>,
    /// NAME=VALUE, repeatable.
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// NAME:PATH, repeatable: storage shared with plug-ins.
    #[arg(long = "volume")]
    pub volumes: Vec<String>,
    #[arg(long)]
    pub memory: Option<u32>,
    #[arg(long)]
    pub replicas: Option<u32>,
    #[arg(long = "depends-on")]
    pub depends_on: Vec<String>,
    /// Replace the component if it exists.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Args, Debug)]
pub struct Target2 {
    pub component: String,
    pub plugin: String,
}

#[derive(Args, Debug)]
pub struct Install {
    pub component: String,
    pub plugin: String,
    #[arg(long)]
    pub version: Option<u32>,
    /// Memory of the plug-in container, MiB (at least the version's minimum).
    #[arg(long)]
    pub memory: Option<u32>,
    #[arg(long)]
    pub cpu: Option<u32>,
    /// ITEM=VALUE for the plug-in's own variables, repeatable; merged into the current values.
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// PORT.ITEM=VALUE for per-port values, repeatable.
    #[arg(long = "set-port")]
    pub set_port: Vec<String>,
    /// COMPONENT:PORT.ITEM=VALUE for per-downstream values, repeatable.
    #[arg(long = "set-downstream")]
    pub set_downstream: Vec<String>,
    /// Install switched off.
    #[arg(long)]
    pub disabled: bool,
    /// Run an init plug-in privileged.
    #[arg(long)]
    pub privileged: bool,
}

#[derive(Args, Debug)]
pub struct Upgrade {
    pub component: String,
    pub plugin: String,
    #[arg(long)]
    pub version: Option<u32>,
}

#[derive(Args, Debug)]
pub struct Render {
    pub component: String,
    #[arg(long, default_value = "kubernetes")]
    pub target: String,
    /// native or classic; the target's default when absent.
    #[arg(long)]
    pub sidecars: Option<String>,
}

#[derive(Args, Debug)]
pub struct Apply {
    /// YAML files with `kind: Plugin` / `kind: Component` documents; `-` reads standard input.
    #[arg(long, short = 'f', required = true)]
    pub file: Vec<PathBuf>,
}
