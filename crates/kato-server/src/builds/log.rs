//! Storing a build's output: each line stamped when it arrives, secrets scrubbed, written in
//! batches so a chatty builder costs few transactions.

use kato_store::{Store, VersionKey, now};
use tokio::sync::mpsc::UnboundedReceiver;

const BATCH: usize = 256;

/// Writes lines until every sender is gone; `stored` after each batch.
pub(super) async fn write_log(
    store: Store,
    key: VersionKey,
    redact: impl Fn(&str) -> String,
    stored: impl Fn(),
    mut rx: UnboundedReceiver<String>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push((now(), redact(&first)));
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(line) => batch.push((now(), redact(&line))),
                Err(_) => break,
            }
        }
        match append(&store, &key, &batch).await {
            Ok(()) => stored(),
            Err(e) => tracing::warn!(error = %e, version = key.2, plugin = %key.1, "could not store build log lines"),
        }
        batch.clear();
    }
}

async fn append(store: &Store, key: &VersionKey, lines: &[(String, String)]) -> Result<(), kato_store::StoreError> {
    let mut tx = store.begin().await?;
    tx.append_build_log(key, lines).await?;
    tx.commit().await
}
