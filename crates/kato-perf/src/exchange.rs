//! What the decoders produce: one matched request and response (or query and answer).

use serde::Serialize;

/// The application protocols analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Mysql,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Protocol::Http),
            "mysql" => Some(Protocol::Mysql),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Mysql => "mysql",
        }
    }
}

/// One request matched with its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// `GET /users/{id}` for HTTP, the statement fingerprint for MySQL.
    pub route: String,
    /// The HTTP status; none for MySQL.
    pub status: Option<u16>,
    /// HTTP 5xx, MySQL ERR.
    pub error: bool,
    /// First response byte − last request byte, in nanoseconds.
    pub latency_ns: u64,
}

/// Why a flow could not be decoded (any more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Undecodable {
    /// Bytes are missing from the stream (packets dropped, or a hole beyond the reorder bound).
    Gap,
    /// The bytes are not the protocol (or a head beyond the size bound).
    Malformed,
    /// The capture joined an open connection (no SYN seen) in the middle of a message.
    MidStream,
}

impl Undecodable {
    pub fn as_str(self) -> &'static str {
        match self {
            Undecodable::Gap => "gap",
            Undecodable::Malformed => "malformed",
            Undecodable::MidStream => "midstream",
        }
    }
}
