//! The pages, by part of the product.

mod components;
pub mod live;
mod plugins;
mod teams;

use axum::Router;

use crate::Console;

pub fn routes() -> Router<Console> {
    Router::new()
        .merge(teams::routes())
        .merge(plugins::routes())
        .merge(components::routes())
}
