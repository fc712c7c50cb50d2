//! The one place where internal errors become gRPC statuses.
//!
//! Codes follow gRPC's meanings: the caller's fault is INVALID_ARGUMENT,
//! NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION or PERMISSION_DENIED
//! (never worth retrying as is); an oversized request is OUT_OF_RANGE (set
//! by tonic's decoder, before any handler); RESOURCE_EXHAUSTED is too many
//! password tries, sign-ups or streams (worth retrying after the wait its
//! message names, not elsewhere); UNAVAILABLE means "this replica cannot serve this
//! now, try another", which is what a client's failover keys on.
//! Messages are sentences a user may be shown.

use chat_shared::validate::ValidationError;
use tonic::Status;

use crate::auth::SessionError;
use crate::auth::password::HashError;
use crate::auth::signup_limit::SignupsUsedUp;
use crate::auth::throttle::Throttled;
use crate::ids::BadId;
use crate::state::{CommandError, StorageError};
use crate::writer::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    BadId(#[from] BadId),
    #[error("invalid cursor: pass back a next_cursor exactly as received")]
    BadCursor,
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    WrongPassword(String),
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    SignupsUsedUp(#[from] SignupsUsedUp),
    #[error(
        "this account already has {0} live event streams open on this server (the most it may); close one (another tab or device) and try again"
    )]
    TooManyStreams(usize),
    /// This replica's clock is off from the cluster's
    /// (`crate::clock_agreement`): the refusal, in words.
    #[error("{0}")]
    ClockOff(String),
    /// A genuine session of an account this replica has not received yet
    /// (it was created while this replica was cut off): another replica
    /// can serve it, so the client should fail over, not log out.
    #[error(
        "this server has not received your account yet (it is catching up with the others); try another server"
    )]
    AccountNotHereYet,
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let msg = e.to_string();
        match e {
            ApiError::Invalid(_) | ApiError::BadId(_) | ApiError::BadCursor => {
                Status::invalid_argument(msg)
            }
            ApiError::Session(_) | ApiError::Unauthenticated(_) => Status::unauthenticated(msg),
            ApiError::WrongPassword(_) => Status::permission_denied(msg),
            ApiError::Gone(_) => Status::failed_precondition(msg),
            ApiError::Command(c) | ApiError::Write(WriteError::Command(c)) => command(c, msg),
            ApiError::Write(WriteError::Gap { .. }) => Status::internal(msg),
            ApiError::Write(WriteError::Unavailable(_)) | ApiError::Storage(_) => {
                tracing::error!(error = %msg, "request failed on storage");
                Status::unavailable(msg)
            }
            ApiError::Throttled(_) | ApiError::SignupsUsedUp(_) | ApiError::TooManyStreams(_) => {
                Status::resource_exhausted(msg)
            }
            ApiError::ClockOff(_)
            | ApiError::Write(WriteError::ClockOff(_))
            | ApiError::AccountNotHereYet => Status::unavailable(msg),
            ApiError::Hash(_) => {
                tracing::error!(error = %msg, "password hashing failed");
                Status::internal(msg)
            }
        }
    }
}

fn command(c: CommandError, msg: String) -> Status {
    match c {
        CommandError::UsernameTaken(_) => Status::already_exists(msg),
        CommandError::UnknownAccount(_) | CommandError::UnknownMessage(_) => Status::not_found(msg),
        CommandError::AccountDeleted(_) => Status::failed_precondition(msg),
        CommandError::MessageToSelf | CommandError::RequestIdReused => {
            Status::invalid_argument(msg)
        }
        CommandError::NotRecipient(_) => Status::permission_denied(msg),
        CommandError::CallerGone | CommandError::PasswordChanged => Status::unauthenticated(msg),
        CommandError::Storage(_) => {
            tracing::error!(error = %msg, "request failed on storage");
            Status::unavailable(msg)
        }
    }
}
