//! HTTP/1.x decoding of one connection: requests and responses are parsed as the two byte
//! streams arrive and matched in order (keep-alive and pipelining: a FIFO of requests waiting
//! for their response). Bodies are skipped by length, chunks or connection close, never kept.

use std::collections::VecDeque;

use crate::exchange::{Exchange, Undecodable};
use crate::template::path_template;

/// Largest request or response head accepted; past it the connection is not HTTP to us.
const MAX_HEAD: usize = 64 * 1024;
/// Requests waiting for a response on one connection.
const MAX_PIPELINED: usize = 256;
const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked(Chunk),
    /// A response without length: it ends when the server closes.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug)]
struct Pending {
    route: String,
    head: bool,
    last_byte: u64,
}

/// One direction's parser state: a head being read, then its body.
#[derive(Debug, Default)]
struct Side {
    buf: Vec<u8>,
    body: Option<Body>,
}

/// The decoder of one HTTP/1.x connection.
#[derive(Debug, Default)]
pub struct HttpConn {
    req: Side,
    res: Side,
    /// The request being read (its body is still arriving).
    reading: Option<Pending>,
    pending: VecDeque<Pending>,
    /// When the first byte of the response being read arrived.
    res_first_byte: Option<u64>,
    res_status: u16,
    /// After `101 Switching Protocols` the bytes are another protocol: ignored.
    upgraded: bool,
}

impl HttpConn {
    /// Bytes from the client, in order, that arrived at `ts` (ns).
    pub fn client_data(&mut self, data: &[u8], ts: u64) -> Result<(), Undecodable> {
        if self.upgraded {
            return Ok(());
        }
        self.req.buf.extend_from_slice(data);
        loop {
            match self.req.body {
                None => {
                    if self.req.buf.is_empty() {
                        return Ok(());
                    }
                    let Some((used, pending, body)) = parse_request(&self.req.buf, ts)? else {
                        return Ok(());
                    };
                    self.req.buf.drain(..used);
                    self.reading = Some(pending);
                    self.req.body = Some(body);
                }
                Some(body) => {
                    let (used, rest) = skip_body(body, &self.req.buf)?;
                    self.req.buf.drain(..used);
                    match rest {
                        Some(b) => {
                            self.req.body = Some(b);
                            return Ok(());
                        }
                        None => {
                            self.req.body = None;
                            if let Some(mut p) = self.reading.take() {
                                p.last_byte = ts;
                                if self.pending.len() == MAX_PIPELINED {
                                    return Err(Undecodable::Malformed);
                                }
                                self.pending.push_back(p);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Bytes from the server, in order, that arrived at `ts` (ns); complete exchanges go to `out`.
    pub fn server_data(&mut self, data: &[u8], ts: u64, out: &mut Vec<Exchange>) -> Result<(), Undecodable> {
        if self.upgraded {
            return Ok(());
        }
        self.res.buf.extend_from_slice(data);
        loop {
            match self.res.body {
                None => {
                    if self.res.buf.is_empty() {
                        return Ok(());
                    }
                    let first = *self.res_first_byte.get_or_insert(ts);
                    let Some((used, status, length)) = parse_response(&self.res.buf)? else {
                        return Ok(());
                    };
                    self.res.buf.drain(..used);
                    if (100..200).contains(&status) && status != 101 {
                        // An interim answer (100 Continue): the final one follows.
                        self.res_first_byte = None;
                        continue;
                    }
                    let Some(req) = self.pending.pop_front() else {
                        // A response to nothing we saw: the capture joined mid-stream.
                        return Err(Undecodable::Malformed);
                    };
                    out.push(Exchange {
                        route: req.route,
                        status: Some(status),
                        error: status >= 500,
                        latency_ns: first.saturating_sub(req.last_byte),
                    });
                    if status == 101 {
                        self.upgraded = true;
                        return Ok(());
                    }
                    self.res_status = status;
                    self.res.body = Some(if req.head || status == 204 || status == 304 {
                        Body::None
                    } else {
                        length
                    });
                }
                Some(body) => {
                    let (used, rest) = skip_body(body, &self.res.buf)?;
                    self.res.buf.drain(..used);
                    match rest {
                        Some(b) => {
                            self.res.body = Some(b);
                            return Ok(());
                        }
                        None => {
                            self.res.body = None;
                            self.res_first_byte = None;
                        }
                    }
                }
            }
        }
    }

    /// Requests sent but not answered yet.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

fn parse_request(buf: &[u8], ts: u64) -> Result<Option<(usize, Pending, Body)>, Undecodable> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(used)) => {
            let method = req.method.unwrap_or("GET");
            let route = format!("{method} {}", path_template(req.path.unwrap_or("/")));
            let body = body_of(req.headers, false)?;
            let pending = Pending {
                route,
                head: method == "HEAD",
                last_byte: ts,
            };
            Ok(Some((used, pending, body)))
        }
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => Ok(None),
        _ => Err(Undecodable::Malformed),
    }
}

fn parse_response(buf: &[u8]) -> Result<Option<(usize, u16, Body)>, Undecodable> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(buf) {
        Ok(httparse::Status::Complete(used)) => {
            let status = res.code.unwrap_or(0);
            Ok(Some((used, status, body_of(res.headers, true)?)))
        }
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => Ok(None),
        _ => Err(Undecodable::Malformed),
    }
}

fn body_of(headers: &[httparse::Header<'_>], response: bool) -> Result<Body, Undecodable> {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value);
            if v.to_ascii_lowercase().trim_end().ends_with("chunked") {
                return Ok(Body::Chunked(Chunk::Size));
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).map_err(|_| Undecodable::Malformed)?;
            length = Some(v.trim().parse::<u64>().map_err(|_| Undecodable::Malformed)?);
        }
    }
    Ok(match length {
        Some(0) => Body::None,
        Some(n) => Body::Length(n),
        None if response => Body::UntilClose,
        None => Body::None,
    })
}

/// Consumes body bytes from `buf`: how many were used, and the body state left (none when the
/// body is complete).
fn skip_body(mut body: Body, buf: &[u8]) -> Result<(usize, Option<Body>), Undecodable> {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        match body {
            Body::None => return Ok((at, None)),
            Body::UntilClose => return Ok((buf.len(), Some(body))),
            Body::Length(n) => {
                let take = n.min(rest.len() as u64);
                at += take as usize;
                return Ok((at, (take < n).then_some(Body::Length(n - take))));
            }
            Body::Chunked(Chunk::Data(n)) => {
                let take = n.min(rest.len() as u64);
                at += take as usize;
                if take < n {
                    return Ok((at, Some(Body::Chunked(Chunk::Data(n - take)))));
                }
                body = Body::Chunked(Chunk::DataEnd);
            }
            Body::Chunked(state) => {
                let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
                    if rest.len() > 4096 {
                        return Err(Undecodable::Malformed);
                    }
                    return Ok((at, Some(body)));
                };
                let line = &rest[..nl];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                at += nl + 1;
                body = match state {
                    Chunk::Size => {
                        let hex = line.split(|b| *b == b';').next().unwrap_or_default();
                        let hex = std::str::from_utf8(hex).map_err(|_| Undecodable::Malformed)?;
                        let n = u64::from_str_radix(hex.trim(), 16).map_err(|_| Undecodable::Malformed)?;
                        Body::Chunked(if n == 0 { Chunk::Trailers } else { Chunk::Data(n) })
                    }
                    Chunk::DataEnd if line.is_empty() => Body::Chunked(Chunk::Size),
                    Chunk::DataEnd => return Err(Undecodable::Malformed),
                    Chunk::Trailers if line.is_empty() => Body::None,
                    Chunk::Trailers => Body::Chunked(Chunk::Trailers),
                    Chunk::Data(_) => unreachable!("handled above"),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    fn run(conn: &mut HttpConn, steps: &[(bool, &[u8], u64)]) -> Result<Vec<Exchange>, Undecodable> {
        let mut out = Vec::new();
        for (client, data, ts) in steps {
            if *client {
                conn.client_data(data, *ts)?;
            } else {
                conn.server_data(data, *ts, &mut out)?;
            }
        }
        Ok(out)
    }

    #[test]
    fn keep_alive_exchanges_are_matched_with_their_latency() {
        let mut c = HttpConn::default();
        let out = run(
            &mut c,
            &[
                (true, b"GET /users/42?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", 10 * MS),
                (false, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 15 * MS),
                (true, b"POST /users HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 20 * MS),
                (true, b"abc", 22 * MS),
                (
                    false,
                    b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                    72 * MS,
                ),
                (false, b"0\r\n\r\n", 73 * MS),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            vec![
                Exchange {
                    route: "GET /users/{id}".into(),
                    status: Some(200),
                    error: false,
                    latency_ns: 5 * MS
                },
                Exchange {
                    route: "POST /users".into(),
                    status: Some(503),
                    error: true,
                    latency_ns: 50 * MS
                },
            ]
        );
        assert_eq!(c.waiting(), 0);
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let mut c = HttpConn::default();
        let out = run(
            &mut c,
            &[
                (
                    true,
                    b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
                    MS,
                ),
                (
                    false,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 404 No\r\nContent-Length: 9\r\n\r\n",
                    3 * MS,
                ),
                (false, b"HTTP/1.1 100 Continue\r\n\r\n", 4 * MS),
                (false, b"HTTP/1.1 204 No Content\r\n\r\n", 6 * MS),
            ],
        )
        .unwrap();
        let routes: Vec<_> = out.iter().map(|e| (e.route.as_str(), e.status, e.latency_ns)).collect();
        assert_eq!(
            routes,
            vec![
                ("GET /a", Some(200), 2 * MS),
                ("HEAD /b", Some(404), 2 * MS),
                ("GET /c", Some(204), 5 * MS)
            ]
        );
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_exchanges() {
        let req = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\nPUT /y/9 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        let res = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 E\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: 1\r\n\r\n";
        for cut in 1..req.len() {
            let mut c = HttpConn::default();
            c.client_data(&req[..cut], 1).unwrap();
            c.client_data(&req[cut..], 2).unwrap();
            let mut out = Vec::new();
            for (i, b) in res.iter().enumerate() {
                c.server_data(&[*b], 10 + i as u64, &mut out).unwrap();
            }
            assert_eq!(out.len(), 2, "cut at {cut}");
            assert_eq!(out[1].route, "PUT /y/{id}");
            assert!(out[1].error);
        }
    }

    #[test]
    fn garbage_and_orphan_responses_are_undecodable() {
        let mut c = HttpConn::default();
        assert_eq!(
            c.client_data(b"\x00\x01\x02 not http\r\n\r\n", 1),
            Err(Undecodable::Malformed)
        );
        let mut c = HttpConn::default();
        let mut out = Vec::new();
        assert_eq!(
            c.server_data(b"HTTP/1.1 200 OK\r\n\r\n", 1, &mut out),
            Err(Undecodable::Malformed)
        );
        let mut c = HttpConn::default();
        let huge = vec![b'a'; MAX_HEAD + 10];
        c.client_data(b"GET /", 1).unwrap();
        assert_eq!(c.client_data(&huge, 1), Err(Undecodable::Malformed));
    }

    #[test]
    fn truncated_captures_never_panic() {
        let full: &[u8] = b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
        for cut in 0..full.len() {
            let mut c = HttpConn::default();
            let _ = c.client_data(&full[..cut], 1);
            let mut out = Vec::new();
            let _ = c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2, &mut out);
            assert!(out.len() <= 1);
        }
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let mut c = HttpConn::default();
            let mut out = Vec::new();
            for (i, (client, data)) in chunks.iter().enumerate() {
                let r = if *client { c.client_data(data, i as u64) } else { c.server_data(data, i as u64, &mut out) };
                if r.is_err() { break; }
            }
        }

        #[test]
        fn http_like_bytes_never_panic(chunks in prop::collection::vec((any::<bool>(), "(GET|HTTP/1.1|POST| /a|\r\n|Content-Length: [0-9]{1,3}|Transfer-Encoding: chunked|[0-9a-f]{1,3}|200 OK|x){0,12}"), 0..20)) {
            let mut c = HttpConn::default();
            let mut out = Vec::new();
            for (i, (client, data)) in chunks.iter().enumerate() {
                let r = if *client { c.client_data(data.as_bytes(), i as u64) } else { c.server_data(data.as_bytes(), i as u64, &mut out) };
                if r.is_err() { break; }
            }
        }
    }
}
