//! ChangePassword: replace the caller's password, confirmed by the current
//! one, and start a new session.
//!
//! Every other session of the account ends, on every replica that has
//! applied the change: a token carries a fingerprint of the password hash it
//! was issued under (`auth::session`), and the new hash has a salt of its
//! own (derived from the request and the hash it replaces:
//! `auth::password`), so no earlier token matches it. The caller's own
//! token ends too; the answer carries its replacement.
//!
//! A retry after a failover may arrive with the old token once the change
//! went through: it is answered with a new session if the change in force
//! is its own (same request id) and it carries the new password -- the same
//! answer the first try would have had. The same holds when the change went
//! through while this try waited for the writer: a change only ever
//! replaces the password its session was checked against (`state::check`).
//! Any other change in force, even one to the same password (another device
//! signing the others out), has ended the session.

use chat_shared::limits::PASSWORD_MAX_BYTES;
use chat_shared::proto::{AuthResponse, ChangePasswordRequest};
use chat_shared::validate::{self, ValidationError};
use tonic::Request;

use super::{ApiError, Context, Session, account_proto, request_id};
use crate::auth::SessionError;
use crate::ids::RequestId;
use crate::state::{Command, CommandError, query};
use crate::writer::WriteError;

pub async fn handle(
    ctx: &Context,
    req: Request<ChangePasswordRequest>,
) -> Result<AuthResponse, ApiError> {
    let (session, current) = ctx.session_of(&req)?;
    let address = req.remote_addr().map(|a| a.ip());
    let req = req.into_inner();
    let rid = request_id(&req.request_id)?;
    validate::password(&req.new_password)?;
    if req.current_password.len() > PASSWORD_MAX_BYTES {
        return Err(ValidationError::PasswordTooLong.into());
    }
    if !current {
        return already_changed(ctx, session, address, req.new_password, rid).await;
    }
    let name = session.record.username.clone();
    let in_force = session.record.password_hash.clone();
    if !ctx
        .check_password(&name, address, req.current_password, Some(in_force.clone()))
        .await?
    {
        return Err(ApiError::WrongPassword(
            "the current password is incorrect; the password was not changed".into(),
        ));
    }
    let password_hash = ctx
        .passwords
        .hash(req.new_password.clone(), session.account, rid, &in_force)
        .await?;
    let submitted = ctx
        .writer
        .submit(
            rid,
            Command::ChangePassword {
                account: session.account,
                password_hash: password_hash.clone(),
                replaces: in_force,
            },
        )
        .await;
    match submitted {
        Ok(_) => {}
        Err(WriteError::Command(CommandError::PasswordChanged)) => {
            // Changed since the session was checked: by this request's
            // earlier try, perhaps, which another replica relayed meanwhile.
            return already_changed(ctx, session, address, req.new_password, rid).await;
        }
        Err(e) => return Err(e.into()),
    }
    // A session under the hash this call stored -- not under whatever is in
    // force by now: if a later change made through another replica at the
    // same moment won, this session ends like every other.
    let mut session = session;
    session.record.password_hash = password_hash;
    answer(ctx, session)
}

/// The answer when the password in force is no longer the one the
/// caller's token was issued under: a new session if the change in force is
/// this very request's (a retry of a change that went through, here or on
/// another replica), else the session has ended -- also when the change in
/// force sets the same password: another device signing the others out.
async fn already_changed(
    ctx: &Context,
    session: Session,
    address: Option<std::net::IpAddr>,
    new_password: String,
    rid: RequestId,
) -> Result<AuthResponse, ApiError> {
    let reader = ctx.store.reader();
    let record = match query::account_status(&reader, session.account)? {
        query::AccountStatus::Active(record) => record,
        _ => return Err(CommandError::CallerGone.into()),
    };
    let ours = match query::password_in_force(&reader, session.account)? {
        Some(change) => ctx
            .store
            .entry(change.stamp.origin, change.stamp.seq)?
            .is_some_and(|e| e.request_id == rid),
        None => false,
    };
    if !ours {
        return Err(SessionError::PasswordChanged.into());
    }
    // Throttled like every password check: an old token and a request id
    // must not become a way to guess the new password.
    let in_force = Some(record.password_hash.clone());
    if ctx
        .check_password(&record.username, address, new_password, in_force)
        .await?
    {
        answer(ctx, Session { record, ..session })
    } else {
        Err(SessionError::PasswordChanged.into())
    }
}

/// A new session under `session.record.password_hash`.
fn answer(ctx: &Context, session: Session) -> Result<AuthResponse, ApiError> {
    let (token, expires_at_ms) = ctx.issue(session.account, &session.record.password_hash);
    Ok(AuthResponse {
        token,
        expires_at_ms,
        account: Some(account_proto(session.account, &session.record)),
        unread_count: query::unread_count(&ctx.store.reader(), session.account)?,
    })
}
