//! Outbound HTTP routing: which downstream serves a request, by `Domains`, `Headers` and
//! `Prefix`, the most specific match first, equally specific ones split by `Weight`.

use hyper::HeaderMap;
use hyper::header::{HOST, HeaderName};

/// One entry of `Domains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    /// `*`: any host.
    Any,
    /// `*.example.com`: any host ending in `.example.com`.
    Suffix(String),
    /// `api.example.com`.
    Exact(String),
}

impl Domain {
    /// Parses one host name (lower-cased); `None` if it has characters a host cannot have.
    pub fn parse(text: &str) -> Option<Domain> {
        let lower = text.trim().to_ascii_lowercase();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        };
        if lower == "*" {
            Some(Domain::Any)
        } else if let Some(rest) = lower.strip_prefix("*.") {
            valid(rest).then(|| Domain::Suffix(format!(".{rest}")))
        } else {
            valid(&lower).then_some(Domain::Exact(lower))
        }
    }

    /// How specific a match of this domain is on `host`: `None` when it does not match.
    fn score(&self, host: &str) -> Option<u8> {
        match self {
            Domain::Any => Some(0),
            Domain::Suffix(s) => (host.len() > s.len() && ends_with_ignore_case(host, s)).then_some(1),
            Domain::Exact(e) => host.eq_ignore_ascii_case(e).then_some(2),
        }
    }
}

fn ends_with_ignore_case(host: &str, suffix: &str) -> bool {
    host.len() >= suffix.len() && host.as_bytes()[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// The match part of one outbound HTTP route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub domains: Vec<Domain>,
    pub prefix: String,
    pub headers: Vec<(HeaderName, String)>,
    pub weight: u32,
}

impl Match {
    /// Matches every request (an inbound listener's single route).
    pub fn any() -> Match {
        Match {
            domains: vec![Domain::Any],
            prefix: "/".into(),
            headers: Vec::new(),
            weight: 1,
        }
    }

    /// How specific a match on this request is, `None` when it does not match. Compared as a
    /// tuple: exact domain over wildcard over `*`, then longer prefix, then more headers.
    fn score(&self, host: &str, path: &str, headers: &HeaderMap) -> Option<(u8, usize, usize)> {
        let domain = self.domains.iter().filter_map(|d| d.score(host)).max()?;
        if !path.starts_with(self.prefix.as_str()) {
            return None;
        }
        let all = self.headers.iter().all(|(name, value)| {
            headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v == value))
        });
        all.then_some((domain, self.prefix.len(), self.headers.len()))
    }
}

/// The host a request is for: the `Host` header (or the URI's authority) without its port.
pub fn request_host<'a>(uri: &'a hyper::Uri, headers: &'a HeaderMap) -> &'a str {
    let raw = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    strip_port(raw)
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

/// The routes of one outbound HTTP listener, each with its target `T`.
#[derive(Debug)]
pub struct Table<T> {
    routes: Vec<(Match, T)>,
}

impl<T> Table<T> {
    pub fn new(routes: Vec<(Match, T)>) -> Table<T> {
        Table { routes }
    }

    pub fn routes(&self) -> impl Iterator<Item = &(Match, T)> {
        self.routes.iter()
    }

    /// The route for a request. `roll` is a random number: it picks among equally specific
    /// matches in proportion to their weights (all weights 0: evenly).
    pub fn select(&self, host: &str, path: &str, headers: &HeaderMap, roll: u64) -> Option<&T> {
        let mut best = None;
        let mut total: u64 = 0;
        let mut count: u64 = 0;
        for (m, _) in &self.routes {
            match (m.score(host, path, headers), best) {
                (Some(s), Some(b)) if s < b => {}
                (Some(s), Some(b)) if s == b => {
                    total += u64::from(m.weight);
                    count += 1;
                }
                (Some(s), _) => {
                    best = Some(s);
                    total = u64::from(m.weight);
                    count = 1;
                }
                (None, _) => {}
            }
        }
        let best = best?;
        let winners = self
            .routes
            .iter()
            .filter(|(m, _)| m.score(host, path, headers) == Some(best));
        if total == 0 {
            let index = (roll % count) as usize;
            return winners.map(|(_, t)| t).nth(index);
        }
        let mut point = roll % total;
        for (m, t) in winners {
            let w = u64::from(m.weight);
            if point < w {
                return Some(t);
            }
            point -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn m(domains: &str, prefix: &str, headers: &[(&str, &str)], weight: u32) -> Match {
        Match {
            domains: domains.split(',').map(|d| Domain::parse(d).unwrap()).collect(),
            prefix: prefix.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), (*v).to_owned()))
                .collect(),
            weight,
        }
    }

    fn hdrs(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn domains_parse() {
        assert_eq!(Domain::parse("*"), Some(Domain::Any));
        assert_eq!(
            Domain::parse("API.Example.com"),
            Some(Domain::Exact("api.example.com".into()))
        );
        assert_eq!(
            Domain::parse("*.example.com"),
            Some(Domain::Suffix(".example.com".into()))
        );
        assert_eq!(Domain::parse("bad host"), None);
        assert_eq!(Domain::parse("a/b"), None);
    }

    #[test]
    fn host_without_port() {
        let uri: hyper::Uri = "/x".parse().unwrap();
        assert_eq!(request_host(&uri, &hdrs(&[("host", "a.b:8080")])), "a.b");
        assert_eq!(request_host(&uri, &hdrs(&[("host", "a.b")])), "a.b");
        assert_eq!(request_host(&uri, &hdrs(&[("host", "[::1]:80")])), "::1");
        assert_eq!(request_host(&uri, &HeaderMap::new()), "");
    }

    #[test]
    fn exact_domain_beats_wildcards() {
        let t = Table::new(vec![
            (m("*", "/", &[], 100), "any"),
            (m("*.example.com", "/", &[], 100), "suffix"),
            (m("api.example.com", "/", &[], 100), "exact"),
        ]);
        let h = HeaderMap::new();
        assert_eq!(t.select("api.example.com", "/", &h, 0), Some(&"exact"));
        assert_eq!(t.select("API.example.com", "/", &h, 0), Some(&"exact"));
        assert_eq!(t.select("www.example.com", "/", &h, 0), Some(&"suffix"));
        assert_eq!(t.select("other", "/", &h, 0), Some(&"any"));
    }

    #[test]
    fn no_match_is_none() {
        let t = Table::new(vec![(m("a.com", "/api", &[], 100), "a")]);
        let h = HeaderMap::new();
        assert_eq!(t.select("b.com", "/api", &h, 0), None);
        assert_eq!(t.select("a.com", "/web", &h, 0), None);
        assert_eq!(t.select("a.com", "/api/v1", &h, 0), Some(&"a"));
    }

    #[test]
    fn longest_prefix_then_more_headers() {
        let t = Table::new(vec![
            (m("*", "/", &[], 100), "root"),
            (m("*", "/api", &[], 100), "api"),
            (m("*", "/api", &[("x-env", "canary")], 100), "canary"),
            (m("*", "/api", &[("x-env", "canary"), ("x-user", "me")], 100), "mine"),
        ]);
        assert_eq!(t.select("h", "/web", &HeaderMap::new(), 0), Some(&"root"));
        assert_eq!(t.select("h", "/api/x", &HeaderMap::new(), 0), Some(&"api"));
        assert_eq!(
            t.select("h", "/api/x", &hdrs(&[("x-env", "canary")]), 0),
            Some(&"canary")
        );
        let both = hdrs(&[("x-env", "canary"), ("x-user", "me")]);
        assert_eq!(t.select("h", "/api/x", &both, 0), Some(&"mine"));
        // Headers must all match: a wrong value falls back.
        assert_eq!(t.select("h", "/api/x", &hdrs(&[("x-env", "prod")]), 0), Some(&"api"));
        // A more specific domain wins over a longer prefix.
        let t2 = Table::new(vec![(m("*", "/api", &[], 1), "long"), (m("h", "/", &[], 1), "exact")]);
        assert_eq!(t2.select("h", "/api", &HeaderMap::new(), 0), Some(&"exact"));
    }

    #[test]
    fn weights_split_equal_matches() {
        let t = Table::new(vec![(m("*", "/", &[], 80), "a"), (m("*", "/", &[], 20), "b")]);
        let h = HeaderMap::new();
        // Every roll modulo 100 lands deterministically.
        let a = (0..1000u64)
            .filter(|r| t.select("h", "/", &h, *r) == Some(&"a"))
            .count();
        assert_eq!(a, 800);
        // With random rolls the split is close to the weights.
        let a = (0..10_000)
            .filter(|_| t.select("h", "/", &h, rand::random()) == Some(&"a"))
            .count();
        assert!((7_400..8_600).contains(&a), "a got {a} of 10000");
    }

    #[test]
    fn zero_weights_split_evenly_and_lose_to_weighted() {
        let t = Table::new(vec![(m("*", "/", &[], 0), "a"), (m("*", "/", &[], 0), "b")]);
        let h = HeaderMap::new();
        assert_eq!(t.select("h", "/", &h, 0), Some(&"a"));
        assert_eq!(t.select("h", "/", &h, 1), Some(&"b"));
        let t = Table::new(vec![(m("*", "/", &[], 0), "a"), (m("*", "/", &[], 5), "b")]);
        assert!((0..100).all(|r| t.select("h", "/", &h, r) == Some(&"b")));
    }
}
