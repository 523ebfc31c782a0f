//! The Kubernetes driver against a mock API server (`tower-test`), scenario by scenario: each test
//! plays the API server's side request by request, checking method, path, query and body, and
//! answers as a cluster would.
//!
//! `server` holds the mock API server; each other module is one area of the driver.

#[path = "../common/mod.rs"]
mod common;
mod deploy;
mod errors;
mod logs;
mod server;
mod status;
mod watch;
