//! Port protocols: the fixed list components and config items may name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Https,
    Http2,
    Grpc,
    Websocket,
    Tcp,
    Udp,
    Mysql,
    Postgresql,
    Redis,
}

impl Protocol {
    pub const ALL: [Protocol; 10] = [
        Self::Http,
        Self::Https,
        Self::Http2,
        Self::Grpc,
        Self::Websocket,
        Self::Tcp,
        Self::Udp,
        Self::Mysql,
        Self::Postgresql,
        Self::Redis,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Http2 => "http2",
            Self::Grpc => "grpc",
            Self::Websocket => "websocket",
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Mysql => "mysql",
            Self::Postgresql => "postgresql",
            Self::Redis => "redis",
        }
    }

    /// The transport a Kubernetes Service uses for this protocol.
    pub fn is_udp(self) -> bool {
        self == Self::Udp
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol `{0}`: use one of http, https, http2, grpc, websocket, tcp, udp, mysql, postgresql, redis")]
pub struct ProtocolError(pub String);

impl FromStr for Protocol {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, ProtocolError> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == lower)
            .ok_or_else(|| ProtocolError(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        std::borrow::Cow::<str>::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Deserializes a protocol list given either as a YAML/JSON list or as Rainbond's comma list
/// (`"http,grpc"`); an empty list means every protocol.
pub fn deserialize_protocols<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Protocol>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        List(Vec<String>),
    }
    let items: Vec<String> = match Option::<Raw>::deserialize(d)? {
        None => Vec::new(),
        Some(Raw::Text(s)) => s.split(',').map(str::to_owned).collect(),
        Some(Raw::List(l)) => l,
    };
    let mut out = Vec::new();
    for item in items.iter().filter(|s| !s.trim().is_empty()) {
        let p: Protocol = item.parse().map_err(serde::de::Error::custom)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}
