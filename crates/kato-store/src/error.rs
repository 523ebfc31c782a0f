//! What a store operation can fail with, and how database errors map onto it.

use sqlx::error::ErrorKind;

/// A store operation failed. The first four variants are the caller's business (answer them
/// to the user); the rest are faults of the database or of the data in it.
///
/// After `NotFound`, `Conflict`, `InUse` or `Immutable` the transaction is still usable on both
/// backends: those are found by checks and `ON CONFLICT DO NOTHING`, never by letting a
/// statement fail (a failed statement aborts the whole transaction on PostgreSQL).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing, or something it needs, does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing already exists.
    #[error("{0}")]
    Conflict(String),
    /// Something else still refers to the thing.
    #[error("{0}")]
    InUse(String),
    /// A finished version cannot change.
    #[error("{0}")]
    Immutable(String),
    /// The URL given to [`Store::open`](crate::Store::open) is not one the store understands.
    #[error("cannot open the database: {0}")]
    InvalidUrl(String),
    /// The schema could not be brought up to date.
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A row holds something the model refuses (bad JSON, an invalid name, a number out of
    /// range): written by another program or an incompatible version of Kato.
    #[error("corrupt row in the database ({what}): {reason}")]
    Corrupt { what: String, reason: String },
    /// The secret key is missing, malformed, or not the one a sealed value needs.
    #[error("{0}")]
    SecretKey(String),
}

impl From<sqlx::Error> for StoreError {
    /// Constraint violations the operation did not foresee still map to the caller's errors,
    /// so a lost race answers 409 rather than 500.
    fn from(e: sqlx::Error) -> Self {
        match violation(&e) {
            Some(ErrorKind::UniqueViolation) => StoreError::Conflict(format!("already exists ({})", db_message(&e))),
            Some(ErrorKind::ForeignKeyViolation) => StoreError::InUse(format!(
                "still referenced, or refers to something missing ({})",
                db_message(&e)
            )),
            _ => StoreError::Database(e),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

fn violation(e: &sqlx::Error) -> Option<ErrorKind> {
    match e {
        sqlx::Error::Database(d) => Some(d.kind()),
        _ => None,
    }
}

fn db_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    }
}

pub(crate) fn corrupt(what: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: reason.to_string(),
    }
}
