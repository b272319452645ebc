//! The gateway's side of the error mapping: wire error codes ([`ErrorCode`], with their close
//! codes, live in `parley-proto`) to HTTP statuses, and storage errors to client errors.

use parley_proto::ErrorCode;
use parley_storage::StorageError;

/// HTTP status for REST responses.
pub(crate) fn http_status(code: ErrorCode) -> u16 {
    use ErrorCode::*;
    match code {
        AuthFailed | TokenExpired | NotAuthenticated => 401,
        Forbidden | Blocked | Banned | Muted => 403,
        NotFound => 404,
        FrameTooLarge | MediaTooLarge => 413,
        MediaUnsupported => 415,
        Moderated => 422,
        Held => 202,
        RateLimited | TooManySessions => 429,
        StorageUnavailable | ShuttingDown => 503,
        Internal => 500,
        Unsupported => 501,
        _ => 400,
    }
}

/// An error with its client-facing text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl ClientError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<StorageError> for ClientError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => ClientError::new(ErrorCode::NotFound, "no such conversation"),
            StorageError::Forbidden(why) => ClientError::new(ErrorCode::Forbidden, why),
            StorageError::Blocked => {
                ClientError::new(ErrorCode::Blocked, "one of the users blocked the other")
            }
            StorageError::Invalid(why) => ClientError::new(ErrorCode::Invalid, why),
            StorageError::Unavailable(why) => {
                tracing::warn!(error = %why, "storage unavailable");
                ClientError::new(
                    ErrorCode::StorageUnavailable,
                    "storage unavailable; nothing was stored, retry later",
                )
            }
            StorageError::Unsupported(why) => ClientError::new(ErrorCode::Unsupported, why),
            StorageError::Corrupt(why) => {
                tracing::error!(error = %why, "corrupt storage record");
                ClientError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}
