//! Login: check a username and password, start a session.
//!
//! Wrong username and wrong password get the same answer (and take the same
//! time, and are throttled alike: `auth::throttle`), so Login does not
//! reveal which usernames exist. A registration that lost a same-name race
//! to another replica is told so here, the first time its owner logs in
//! after the race was decided.

use std::net::IpAddr;

use chat_shared::limits::PASSWORD_MAX_BYTES;
use chat_shared::proto::{AuthResponse, LoginRequest};
use chat_shared::validate::{self, ValidationError};

use super::{ApiError, Context, account_proto, lost_name};
use crate::state::query;

pub async fn handle(
    ctx: &Context,
    address: Option<IpAddr>,
    req: LoginRequest,
) -> Result<AuthResponse, ApiError> {
    validate::username(&req.username)?;
    if req.password.len() > PASSWORD_MAX_BYTES {
        return Err(ValidationError::PasswordTooLong.into());
    }
    let norm = validate::normalize_username(&req.username);
    let kv = ctx.store.reader();
    let owner = query::name_owner(&kv, &norm)?;
    let owner_rec = match owner {
        Some(id) => query::account(&kv, id)?,
        None => None,
    };
    let hash = owner_rec
        .as_ref()
        .filter(|r| !r.deleted)
        .map(|r| r.password_hash.clone());
    if ctx
        .check_password(&req.username, address, req.password.clone(), hash)
        .await?
        && let (Some(id), Some(rec)) = (owner, owner_rec.as_ref())
    {
        let (token, expires_at_ms) = ctx.issue(id, &rec.password_hash);
        return Ok(AuthResponse {
            token,
            expires_at_ms,
            account: Some(account_proto(id, rec)),
            unread_count: query::unread_count(&kv, id)?,
        });
    }
    if owner_rec.as_ref().is_some_and(|r| r.deleted) {
        return Err(ApiError::Unauthenticated(format!(
            "the account '{}' has been deleted",
            req.username
        )));
    }
    // Did this password register the name in a race it lost?
    for (id, rec) in query::claimants(&kv, &norm)? {
        if Some(id) != owner
            && !rec.deleted
            && ctx
                .passwords
                .verify(req.password.clone(), Some(rec.password_hash.clone()))
                .await
        {
            return Err(lost_name(&rec.username));
        }
    }
    Err(ApiError::Unauthenticated(
        "wrong username or password".into(),
    ))
}
