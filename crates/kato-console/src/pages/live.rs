//! Server-sent events for the live parts of pages: a streamed text answer of the API (a followed
//! build log, a followed container log) as one `line` event per line, then one `end` event.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;

/// The number of lines a reconnecting `EventSource` already has (its `Last-Event-ID`).
pub fn resume_after(headers: &HeaderMap) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends each line of `body` as a `line` event whose id is its number (from 1), skipping the
/// first `skip`; when the body ends, sends `end` with what `ended` says (the build's outcome, …).
pub fn lines<F, Fut>(body: Body, skip: u64, ended: F) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = String> + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut partial: Vec<u8> = Vec::new();
        let mut n: u64 = 0;
        let send_line = |line: &[u8], n: &mut u64| {
            *n += 1;
            let text = String::from_utf8_lossy(line);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            (*n > skip).then(|| Event::default().event("line").id(n.to_string()).data(text))
        };
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            partial.extend_from_slice(&chunk);
            let mut start = 0;
            let mut events = Vec::new();
            while let Some(i) = partial[start..].iter().position(|b| *b == b'\n') {
                events.extend(send_line(&partial[start..start + i], &mut n));
                start += i + 1;
            }
            partial.drain(..start);
            for e in events {
                if tx.send(e).await.is_err() {
                    return; // the page went away
                }
            }
        }
        if !partial.is_empty()
            && let Some(e) = send_line(&partial, &mut n)
        {
            let _ = tx.send(e).await;
        }
        let _ = tx.send(Event::default().event("end").data(ended().await)).await;
    });
    Sse::new(ReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
