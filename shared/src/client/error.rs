//! What a call can end with, and the one rule that decides between "tell
//! the user" and "try another replica".
//!
//! A replica that *answered* with one of the caller's-fault codes of
//! `docs/protocol.md` (wrong password, name taken, not found, ...) would
//! answer the same everywhere: the error goes to the user. (Password tries
//! are counted per replica, so another replica might take one more guess;
//! sending the guess elsewhere is exactly what the limit must not invite.) Anything else --
//! `UNAVAILABLE`, a missed deadline, a connection that broke, a response that
//! is not gRPC -- leaves the outcome unknown, and the request is sent again,
//! with the same request id, to another replica.

use tonic::{Code, Status};

use crate::validate::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The input breaks a rule of `chat_shared::validate`; nothing was sent.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The call needs a session and there is none (log in first).
    #[error("you are not logged in")]
    NotLoggedIn,
    /// A replica refused the request for a reason that holds on every
    /// replica. The status message is a sentence fit for the user.
    #[error("{}", .0.message())]
    Rejected(Status),
    /// No replica answered within the configured number of rounds
    /// (`Config::offline_rounds`; by default the client never gives up).
    #[error("no server is reachable")]
    Offline,
    /// A replica chosen by hand ([`super::Client::switch_to`]) did not answer.
    #[error("{0} is not answering")]
    Unreachable(String),
}

impl CallError {
    /// The gRPC code of a rejection.
    pub fn code(&self) -> Option<Code> {
        match self {
            CallError::Rejected(s) => Some(s.code()),
            _ => None,
        }
    }

    /// The session is no longer accepted (expired, account deleted, or the
    /// username went to someone else): the user must log in again.
    pub fn is_session_ended(&self) -> bool {
        matches!(self, CallError::NotLoggedIn) || self.code() == Some(Code::Unauthenticated)
    }

    /// Refused because of the state of what the call names (a send to a
    /// deleted account, or a retried send whose message was deleted since:
    /// docs/protocol.md): sending it again will not help.
    pub fn is_failed_precondition(&self) -> bool {
        self.code() == Some(Code::FailedPrecondition)
    }
}

/// Whether a failed call should be re-sent to another replica.
///
/// A status built on this side from a transport error carries that error as
/// its `source` and is always a failover, whatever code tonic mapped it to
/// (it maps some I/O errors to `PERMISSION_DENIED` or `OUT_OF_RANGE`). A
/// status a replica sent has no source; its code decides.
pub fn is_failover(status: &Status) -> bool {
    if std::error::Error::source(status).is_some() {
        return true;
    }
    !matches!(
        status.code(),
        Code::InvalidArgument
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::OutOfRange
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_errors_stay_transport_errors_move() {
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
        ] {
            assert!(!is_failover(&Status::new(code, "no")), "{code:?}");
        }
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Unknown,
            Code::Cancelled,
            Code::Internal,
            Code::Aborted,
            Code::Unimplemented,
        ] {
            assert!(is_failover(&Status::new(code, "hm")), "{code:?}");
        }
        // A broken connection, whatever code it was mapped to.
        let io = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
        let status = Status::from_error(Box::new(io));
        assert!(is_failover(&status));
    }
}
