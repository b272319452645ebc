use thiserror::Error;

/// Everything a storage engine can fail with. Engines map their own errors into these; callers
/// map these to wire codes and HTTP statuses in one place (the gateway's `errors` module).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The conversation (or message) does not exist.
    #[error("not found")]
    NotFound,
    /// The user may not do this (not a participant, not allowed to delete, ...).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// A block between the two users forbids it.
    #[error("blocked")]
    Blocked,
    /// The request itself is invalid (empty participant list, too many participants, ...).
    #[error("invalid: {0}")]
    Invalid(&'static str),
    /// The engine cannot serve right now (I/O error, lost connection); retrying later may work.
    /// Nothing was acknowledged that is not stored.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// This engine does not offer the operation (e.g. the change feed on ScyllaDB).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// Stored bytes could not be decoded: a bug or disk corruption; retrying will not help.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
