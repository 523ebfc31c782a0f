//! Real parts for Kato's tests, started and torn down by each test: no mocks of what runs here.
//!
//! - [`TestRegistry`]: Debian's `docker-registry` (the CNCF distribution registry) on a loopback port,
//!   with filesystem storage in a temp dir and optional htpasswd auth.
//! - [`GitRepo`] and [`base_image`]: git repos with commits, branches and tags, and a busybox base
//!   image imported into podman without any network pull, for real Dockerfile builds.
//! - [`FlakyRegistry`]: a proxy in front of one that answers 503 (or 404, 401…) on demand, and
//!   counts requests, for the retry tests.
//! - [`PushedImage`]: a tiny OCI image (one config blob, one layer tarball) pushed into it, with the
//!   digest it was stored under.
//!
//! ```no_run
//! # async fn demo() {
//! let reg = kato_testkit::TestRegistry::start().await;
//! let pushed = reg.push_image("team/app", "1").await;
//! assert!(pushed.pinned().starts_with(reg.host()));
//! # }
//! ```

#![forbid(unsafe_code)]

mod build;
mod flaky;
mod image;
mod registry;

pub use build::{GitRepo, base_image, busybox_full_image, containers_conf};
pub use flaky::FlakyRegistry;
pub use image::PushedImage;
pub use registry::TestRegistry;
