//! DeleteAccount: delete the caller's account, confirmed by its password.
//!
//! The username is retired forever and the id never reused. Messages the
//! account sent stay in their recipients' conversations, shown as from a
//! deleted account; messages it received stay in their senders'
//! conversations. Its sessions stop working everywhere the deletion has
//! been applied.

use chat_shared::limits::PASSWORD_MAX_BYTES;
use chat_shared::proto::{DeleteAccountRequest, DeleteAccountResponse};
use chat_shared::validate::ValidationError;
use tonic::Request;

use super::{ApiError, Context, request_id};
use crate::state::Command;

pub async fn handle(
    ctx: &Context,
    req: Request<DeleteAccountRequest>,
) -> Result<DeleteAccountResponse, ApiError> {
    // Bad input is refused before anything else, the retry of a deletion
    // that went through included.
    let rid = request_id(&req.get_ref().request_id)?;
    if req.get_ref().password.len() > PASSWORD_MAX_BYTES {
        return Err(ValidationError::PasswordTooLong.into());
    }
    let session = match ctx.authenticate(&req) {
        Ok(session) => session,
        // A retry of a deletion that went through (the answer was lost in a
        // failover): the token is genuine and the account is gone, which is
        // what was asked.
        Err(e) if ctx.session_of_deleted_account(&req)? => {
            tracing::debug!(error = %e, "repeated DeleteAccount of a deleted account");
            return Ok(DeleteAccountResponse {});
        }
        Err(e) => return Err(e),
    };
    let address = req.remote_addr().map(|a| a.ip());
    let req = req.into_inner();
    // Throttled like Login: a stolen session must not become a way to
    // guess the password.
    let name = &session.record.username;
    let hash = Some(session.record.password_hash);
    if !ctx
        .check_password(name, address, req.password, hash)
        .await?
    {
        return Err(ApiError::WrongPassword(
            "the password is incorrect; the account was not deleted".into(),
        ));
    }
    ctx.writer
        .submit(
            rid,
            Command::DeleteAccount {
                account: session.account,
            },
        )
        .await?;
    Ok(DeleteAccountResponse {})
}
