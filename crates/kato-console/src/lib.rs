//! Kato's web console: pages rendered on the server over the REST API, served by `kato serve`
//! at `/`.
//!
//! Every page reads and writes through the API itself, called in-process with the session's
//! token ([`api::Api`]): the console sees exactly what that token may see, and a form is checked
//! by the same validation as a request to `/api/v1`. Forms work without JavaScript; the one
//! script, `console.js`, adds the live parts (build and container logs, discovery acks) over
//! server-sent events, validation as the user types, and the log viewer's controls.
#![forbid(unsafe_code)]

pub mod api;
mod assets;
pub mod form;
mod pages;
pub mod session;
mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use kato_server::AppState;

pub use api::{Api, Failure};
pub use session::Session;

/// The URLs of the stylesheet and the script every page loads.
pub fn assets_urls() -> (String, String) {
    (assets::css_url(), assets::js_url())
}

/// What every page handler shares.
#[derive(Clone)]
pub struct Console {
    pub state: Arc<AppState>,
    pub api: Api,
    pub options: Options,
}

/// How the console runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often a page showing pods' acks looks again without being told of a change: an ack
    /// stored by this server wakes it at once; one stored by another replica is seen then.
    pub ack_recheck: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ack_recheck: Duration::from_secs(2),
        }
    }
}

/// The console's routes, for [`kato_server::serve_app`]: `kato serve` passes this.
pub fn pages() -> kato_server::Pages {
    pages_with(Options::default())
}

/// The console's routes, run with `options`.
pub fn pages_with(options: Options) -> kato_server::Pages {
    Box::new(move |state| router_with(state, options))
}

/// The console's routes over `state` (without the API, which the server serves beside them).
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Options::default())
}

fn router_with(state: Arc<AppState>, options: Options) -> Router {
    let console = Console {
        api: Api::new(kato_server::router(state.clone())),
        state,
        options,
    };
    Router::new()
        .merge(assets::routes())
        .merge(session::routes())
        .merge(pages::routes())
        .with_state(console)
}
