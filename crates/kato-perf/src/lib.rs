//! `kato-perf`: Kato's performance-analysis plug-in, as a library.
//!
//! Passive: the plug-in shares the pod's network namespace and reads copies of the packets of
//! the analysed ports ([`capture`]); TCP segments are put back in order per connection
//! ([`flow`]) and decoded as HTTP/1.x ([`http`]) or MySQL ([`mysql`]); matched exchanges are
//! aggregated per port and route ([`stats`]) into Prometheus metrics and a JSON summary.
#![forbid(unsafe_code)]

pub mod bpf;
pub mod capture;
pub mod config;
pub mod exchange;
pub mod fingerprint;
pub mod flow;
pub mod http;
pub mod mysql;
pub mod packet;
pub mod perf;
pub mod routes;
pub mod server;
pub mod stats;
pub mod template;
pub mod window;

pub use capture::{Capture, CaptureError};
pub use config::{Config, Rejection};
pub use exchange::{Exchange, Protocol, Undecodable};
pub use flow::{FlowTracker, Segment};
pub use perf::Perf;
pub use stats::{Stats, Summary};
