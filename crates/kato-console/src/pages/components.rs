//! The team's components pages.

use axum::Router;

use crate::Console;

pub fn routes() -> Router<Console> {
    Router::new()
}
