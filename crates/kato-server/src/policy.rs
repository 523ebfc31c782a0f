//! What a team token may not do that the admin token may: set a plug-in source that reads the
//! server's own disk, and make an installation privileged; and what no request may do for a
//! team: name another team's images in the platform registry. Each check answers 403 naming
//! the field and what would allow it.

use kato_model::{ImageRef, Installation, Source, TeamName};

use crate::auth::Principal;
use crate::builds::Builds;
use crate::error::{ApiError, ApiResult};

/// An image a request or a deploy makes Kato read for `team` (a plug-in's `source.image`, a
/// component's `image`): in the platform registry, which every team shares, only the team's
/// own directory. Whoever asks, the admin too: the image is read for the team.
pub fn check_image(builds: &Builds, team: &TeamName, image: &ImageRef, field: &str) -> ApiResult<()> {
    builds
        .check_image(team, image)
        .map_err(|e| ApiError::forbidden_field(field, e.to_string()))
}

/// [`check_image`] for a plug-in source; `prefix` places the field as in [`check_source`].
pub fn check_plugin_image(builds: &Builds, team: &TeamName, source: &Source, prefix: &str) -> ApiResult<()> {
    match source {
        Source::Image(image) => check_image(builds, team, image, &format!("{prefix}source.image")),
        Source::Dockerfile(_) => Ok(()),
    }
}

/// A Dockerfile source set or changed by a request (`before` is the stored one, if any): a
/// local directory or `file://` repo needs the admin token, or a server started with
/// `--allow-local-repos`. `prefix` places the field (`""`, or `documents[3].spec.` in an apply).
pub fn check_source(
    who: &Principal,
    allow_local_repos: bool,
    source: &Source,
    before: Option<&Source>,
    prefix: &str,
) -> ApiResult<()> {
    let Source::Dockerfile(d) = source else {
        return Ok(());
    };
    if allow_local_repos || *who == Principal::Admin || before == Some(source) {
        return Ok(());
    }
    if d.repo_kind().is_ok_and(|k| k.is_local()) {
        return Err(ApiError::forbidden_field(
            format!("{prefix}source.dockerfile.repo"),
            format!(
                "`{}` is a directory on the Kato server (or a file:// URL): a team token may not build from the \
                 server's disk. Give an https:// or ssh:// URL, or ask the admin (the admin token may, and so may \
                 every token on a server started with --allow-local-repos or KATO_ALLOW_LOCAL_REPOS=true)",
                d.repo
            ),
        ));
    }
    Ok(())
}

/// An installation becoming privileged, or a privileged one changing the version it runs,
/// needs the admin token: a privileged container is root on the host of a rootful engine.
pub fn check_privileged(
    who: &Principal,
    current: Option<&Installation>,
    next: &Installation,
    field: &str,
) -> ApiResult<()> {
    if !next.privileged || *who == Principal::Admin {
        return Ok(());
    }
    let approved = current.is_some_and(|c| c.privileged && c.version == next.version);
    if approved {
        return Ok(());
    }
    let what = if current.is_some_and(|c| c.privileged) {
        format!(
            "`{}` runs privileged: moving it to version {} needs the admin token",
            next.plugin, next.version
        )
    } else {
        format!(
            "running `{}` privileged needs the admin token: a privileged container is root on the host",
            next.plugin
        )
    };
    Err(ApiError::forbidden_field(
        field,
        format!("{what}; a team token may not set it (leave privileged off, or ask the admin)"),
    ))
}
