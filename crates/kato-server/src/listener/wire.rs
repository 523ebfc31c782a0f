//! The wire of the lean path: recognising the discovery GETs it answers, and writing answers.

use std::io;

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use tokio::net::TcpStream;

use crate::api::discovery;
use crate::discovery::Snapshot;

const MAX_HEADERS: usize = 24;
const PREFIX: &str = "/discovery/v1/";

/// What the bytes at the start of a buffer are.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Head {
    /// A discovery GET this path answers, and the length of its head.
    Ours(DocumentGet, usize),
    /// A whole head (or bytes that are no HTTP/1 head at all) that axum answers.
    Axum,
    /// The start of a head: more is to come.
    Partial,
}

/// Classifies the request at the start of `buf`.
pub(super) fn head(buf: &[u8]) -> Head {
    if let Some((get, len)) = parse(buf) {
        return Head::Ours(get, len);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Partial) => Head::Partial,
        // Complete, not ours, or not HTTP/1 at all (more headers than this path reads too).
        _ => Head::Axum,
    }
}

/// A discovery GET this path answers itself.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DocumentGet {
    pub path: (String, String, String),
    pub revision: Option<u64>,
    pub wait: Option<u64>,
    pub token: Option<String>,
    pub keep_alive: bool,
}

/// The request at the start of `buf` and the length of its head, if it is a complete
/// HTTP/1.1 `GET /discovery/v1/{team}/{component}/{plugin}` with at most `revision` and `wait`
/// as whole numbers, no body and nothing unusual; anything else is axum's.
pub(super) fn parse(buf: &[u8]) -> Option<(DocumentGet, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(buf).ok()? else {
        return None;
    };
    if req.method? != "GET" || req.version? != 1 {
        return None;
    }
    let (path, query) = req.path?.split_once('?').unwrap_or((req.path?, ""));
    let mut parts = path.strip_prefix(PREFIX)?.split('/');
    let mut segment = || {
        parts
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .map(str::to_owned)
    };
    let triple = (segment()?, segment()?, segment()?);
    if parts.next().is_some() {
        return None;
    }
    let (mut revision, mut wait) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=')?;
        let slot = match name {
            "revision" => &mut revision,
            "wait" => &mut wait,
            _ => return None,
        };
        if slot.is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = Some(value.parse().ok()?);
    }
    let mut token = None;
    let mut keep_alive = true;
    for h in req.headers.iter() {
        // As `HeaderValue::to_str`: visible ASCII only, else axum decides.
        if !h.value.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
            return None;
        }
        let value = std::str::from_utf8(h.value).ok()?;
        if h.name.eq_ignore_ascii_case("authorization") {
            if token.is_none() {
                token = Some(value.to_owned());
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if !option.eq_ignore_ascii_case("keep-alive") {
                    return None;
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            if value.trim() != "0" {
                return None;
            }
        } else if ["transfer-encoding", "expect", "upgrade"]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n))
        {
            return None;
        }
    }
    let get = DocumentGet {
        path: triple,
        revision,
        wait,
        token,
        keep_alive,
    };
    Some((get, len))
}

/// The head of a document answer up to its `date` header: the same for every answer of one
/// revision, so built once with the revision's snapshot.
pub(crate) fn document_head(revision: u64, body_len: usize) -> Bytes {
    Bytes::from(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{}: {revision}\r\ncontent-length: {body_len}\r\n",
        discovery::REVISION_HEADER
    ))
}

/// Writes a document answer: its shared head and body, and the date, in one system call. (Not
/// an `async fn`: the pieces are written, or copied, before the returned future is first
/// polled, so that they never size the connection's task.)
pub(super) fn write_document<'s>(
    stream: &'s TcpStream,
    snapshot: &Snapshot,
    keep_alive: bool,
) -> impl Future<Output = io::Result<()>> + use<'s> {
    crate::api::count_response(StatusCode::OK);
    let close: &[u8] = if keep_alive { b"" } else { b"connection: close\r\n" };
    write_all(stream, [&snapshot.head, close, &date_line(), &snapshot.body])
}

/// `date: <now>` and the blank line ending a head; formatted at most once a second per thread.
fn date_line() -> [u8; DATE_LINE] {
    thread_local! {
        static NOW: std::cell::RefCell<(u64, [u8; DATE_LINE])> = const { std::cell::RefCell::new((0, [0; DATE_LINE])) };
    }
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|(at, line)| {
        if *at != secs {
            let text = format!("date: {}\r\n\r\n", httpdate::fmt_http_date(now));
            line.copy_from_slice(text.as_bytes());
            *at = secs;
        }
        *line
    })
}

/// `date: ` + an IMF-fixdate (always 29 bytes) + two line ends.
const DATE_LINE: usize = 6 + 29 + 4;

/// Writes a response with a complete body (the discovery answers all have one) as HTTP/1.1.
pub(super) async fn write_response(stream: &TcpStream, res: Response, keep_alive: bool) -> io::Result<()> {
    crate::api::count_response(res.status());
    let (parts, body) = res.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut head = Vec::with_capacity(160);
    let status = parts.status;
    head.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if status != StatusCode::NOT_MODIFIED && status != StatusCode::NO_CONTENT {
        head.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    }
    write_all(stream, [&head, &date_line(), &body]).await
}

/// Writes `parts` in order: at once, in one vectored write, when the socket takes them all (it
/// does for answers this size); otherwise what remains is copied and written as the socket
/// drains. The first attempt happens before the returned future is polled.
pub(super) fn write_all<'s, const N: usize>(
    stream: &'s TcpStream,
    parts: [&[u8]; N],
) -> impl Future<Output = io::Result<()>> + use<'s, N> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let rest = match stream.try_write_vectored(&parts.map(io::IoSlice::new)) {
        Ok(n) if n == total => Ok(Vec::new()),
        Ok(n) => Ok(parts.concat().split_off(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(parts.concat()),
        Err(e) => Err(e),
    };
    async move {
        let rest = rest?;
        let mut written = 0;
        while written < rest.len() {
            // `&TcpStream` writes through its shared readiness, like `write_all` on `&mut`.
            stream.writable().await?;
            match stream.try_write(&rest[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(head: &str) -> Option<DocumentGet> {
        parse(head.as_bytes()).map(|(g, len)| {
            assert_eq!(len, head.len());
            g
        })
    }

    #[test]
    fn plain_document_gets_are_taken() {
        let g = get("GET /discovery/v1/demo/web/mesh?revision=3&wait=30 HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer kd_1\r\n\r\n")
            .unwrap();
        assert_eq!(
            g,
            DocumentGet {
                path: ("demo".into(), "web".into(), "mesh".into()),
                revision: Some(3),
                wait: Some(30),
                token: Some("Bearer kd_1".into()),
                keep_alive: true,
            }
        );
        let g = get("GET /discovery/v1/demo/web/mesh HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!g.keep_alive && g.token.is_none() && g.revision.is_none());
    }

    #[test]
    fn everything_else_goes_to_axum() {
        for head in [
            "GET /discovery/v1/demo/web/mesh HTTP/1.0\r\n\r\n",
            "POST /discovery/v1/demo/web/mesh/ack HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh/ack HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/web HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/w%65b/mesh HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh?revision=x HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh?revision=1&revision=2 HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh?other=1 HTTP/1.1\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            "GET /discovery/v1/demo/web/mesh HTTP/1.1\r\nHost: k\r\n",
            "GET /api/v1/teams HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse(head.as_bytes()), None, "{head}");
        }
    }
}
