//! Between rows and the model: JSON documents, names and numbers are checked on the way in,
//! so a bad row surfaces as [`StoreError::Corrupt`] naming the row, never as a panic.

use std::str::FromStr;

use kato_model::{NameError, VersionStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::Timestamp;
use crate::error::{StoreError, corrupt};

/// Now, as the store writes timestamps (see [`Timestamp`]).
pub fn now() -> Timestamp {
    format_time(OffsetDateTime::now_utc())
}

/// `d` from now, as the store writes timestamps.
pub(crate) fn from_now(d: std::time::Duration) -> Timestamp {
    format_time(OffsetDateTime::now_utc() + d)
}

/// How long until `t` (a timestamp as the store writes them); zero once it is past, and for text
/// that is not one.
pub fn until(t: &str) -> std::time::Duration {
    let Ok(t) = OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) else {
        return std::time::Duration::ZERO;
    };
    (t - OffsetDateTime::now_utc()).try_into().unwrap_or_default()
}

fn format_time(t: OffsetDateTime) -> Timestamp {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

pub(crate) fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt(format!("encoding {what}"), e))
}

pub(crate) fn from_json<T: DeserializeOwned>(what: impl FnOnce() -> String, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what(), e))
}

pub(crate) fn name<T: FromStr<Err = NameError>>(text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|e: NameError| corrupt(format!("a {} column", e.what), e))
}

/// Version numbers are `u32` in the model and BIGINT in the database.
pub(crate) fn number(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt("a version number", format!("{value} is not a u32")))
}

pub(crate) fn status(text: &str) -> Result<VersionStatus, StoreError> {
    text.parse().map_err(|e: String| corrupt("a version status", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_rfc3339() {
        let t = now();
        assert_eq!(t.len(), "2025-01-31T12:00:00.000000Z".len(), "{t}");
        OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).unwrap();
    }

    #[test]
    fn bad_rows_are_corrupt_not_panics() {
        let e = name::<kato_model::TeamName>("Bad Name").unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(number(-1).is_err());
        assert!(status("done").is_err());
        let e = from_json::<kato_model::PluginSpec>(|| "plug-in `t/p`".into(), "{").unwrap_err();
        assert!(e.to_string().contains("plug-in `t/p`"), "{e}");
    }
}
