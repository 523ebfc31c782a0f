//! Why a Dockerfile build failed, in words that say what to do.

use std::time::Duration;

/// A failed build. Messages quote the tool's last lines where they explain the failure; they never
/// hold a credential (the server also scrubs known secrets from everything it stores).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("git repo `{repo}` is unreachable: {detail}: check the URL, the network and the repo's credentials")]
    RepoUnreachable { repo: String, detail: String },
    #[error(
        "repo `{repo}` is a directory on the Kato server (or a file:// URL), and this build may not read the \
         server's disk: give an https:// or ssh:// URL, or ask the server's admin (local repos need the admin \
         token, or a server started with --allow-local-repos)"
    )]
    LocalRepoRefused { repo: String },
    #[error(
        "ssh repo `{repo}` needs the team's SSH key for `{host}`: add a credential for `{host}` with the private \
         key and the host's known_hosts line (`kato credential set {host} --ssh-key FILE --known-hosts FILE`, \
         or POST /teams/TEAM/credentials with ssh_key and known_hosts); Kato never clones with the server's own keys"
    )]
    NoSshCredential { repo: String, host: String },
    #[error(
        "git ref `{git_ref}` was not found in `{repo}`: give a branch, tag or commit that exists \
         (source.dockerfile.ref)"
    )]
    RefNotFound { repo: String, git_ref: String },
    #[error("there is no Dockerfile at `{path}` in `{repo}` at commit {commit}: fix source.dockerfile.path")]
    NoDockerfile { repo: String, path: String, commit: String },
    #[error("the build context `{context}` is not a directory of `{repo}`: fix source.dockerfile.context")]
    NoContext { repo: String, context: String },
    #[error(
        "{field} `{path}` leads outside the repo: `{symlink}` in the repo is a symlink to `{target}`; a build \
         reads only its own repo's files: make {field} a real file or directory of the repo"
    )]
    OutsideRepo {
        field: String,
        path: String,
        symlink: String,
        target: String,
    },
    #[error("{path} line {line}, `{instruction}`: {why}; the build was stopped before anything was pulled")]
    ForeignImage {
        path: String,
        line: usize,
        instruction: String,
        why: String,
    },
    #[error(
        "{path}: podman runs Dockerfiles named `*.in` through the C preprocessor, which can build references \
         Kato cannot check against the platform registry: rename it (source.dockerfile.path)"
    )]
    PreprocessedDockerfile { path: String },
    #[error("build step failed: {step}: {}", tail(.last_lines))]
    StepFailed { step: String, last_lines: Vec<String> },
    #[error("pushing `{target}` to the platform registry failed: {}", tail(.last_lines))]
    PushFailed { target: String, last_lines: Vec<String> },
    #[error("the build did not finish within {}s: raise the server's --build-timeout or make the build faster", .after.as_secs())]
    Timeout { after: Duration },
    #[error("the build was cancelled")]
    Cancelled,
    #[error("{0}")]
    Tool(String),
}

impl BuildError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            BuildError::RepoUnreachable { .. } => "repo_unreachable",
            BuildError::RefNotFound { .. } => "git_ref_not_found",
            BuildError::LocalRepoRefused { .. } => "local_repo_refused",
            BuildError::NoSshCredential { .. } => "no_ssh_credential",
            BuildError::NoDockerfile { .. } => "no_dockerfile",
            BuildError::NoContext { .. } => "no_context",
            BuildError::OutsideRepo { .. } => "outside_repo",
            BuildError::ForeignImage { .. } => "foreign_image",
            BuildError::PreprocessedDockerfile { .. } => "preprocessed_dockerfile",
            BuildError::StepFailed { .. } => "build_step_failed",
            BuildError::PushFailed { .. } => "push_failed",
            BuildError::Timeout { .. } => "build_timeout",
            BuildError::Cancelled => "cancelled",
            BuildError::Tool(_) => "builder_error",
        }
    }
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        "(no output)".to_owned()
    } else {
        format!("last lines:\n{}", lines.join("\n"))
    }
}
