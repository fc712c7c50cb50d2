//! CreateAccount: register a username and start a session.
//!
//! Each new account takes a sign-up from the caller's address
//! (`auth::signup_limit`) before its password is hashed. A retry of a
//! creation that already went through takes none and hashes nothing: it
//! gets the session if it carries the password (checked, and throttled,
//! like a Login's).

use std::net::IpAddr;
use std::time::Instant;

use chat_shared::proto::{AuthResponse, CreateAccountRequest};
use chat_shared::validate;

use super::{ApiError, Context, account_proto, request_id};
use crate::ids::AccountId;
use crate::state::query::{self, AccountStatus};
use crate::state::{Command, CommandError};
use crate::writer::Outcome;

pub async fn handle(
    ctx: &Context,
    address: Option<IpAddr>,
    req: CreateAccountRequest,
) -> Result<AuthResponse, ApiError> {
    validate::username(&req.username)?;
    validate::password(&req.password)?;
    let rid = request_id(&req.request_id)?;
    let account = AccountId::derive(&validate::normalize_username(&req.username), &rid);
    let outcome = if matches!(
        query::account_status(&ctx.store.reader(), account)?,
        AccountStatus::Unknown
    ) {
        if ctx.signups.take(address, Instant::now())? {
            // Once per emptying, not per refused sign-up: a script cannot
            // flood the log.
            tracing::warn!(address = ?address, "sign-ups used up; further ones are limited");
        }
        let password_hash = ctx
            .passwords
            .hash(req.password.clone(), account, rid, "")
            .await?;
        ctx.writer
            .submit(
                rid,
                Command::CreateAccount {
                    username: req.username.clone(),
                    password_hash,
                },
            )
            .await?
    } else {
        // This request's account exists: a retry of a creation that went
        // through. Nothing to hash, log or count against the address.
        Outcome::AlreadyDone
    };
    let kv = ctx.store.reader();
    let status = query::account_status(&kv, account)?;
    if outcome == Outcome::AlreadyDone {
        // A retry: only the holder of the password gets the session -- a
        // password check like Login's, throttled alike.
        let stored = match &status {
            AccountStatus::Active(rec) => Some(rec.password_hash.clone()),
            _ => None,
        };
        if !ctx
            .check_password(&req.username, address, req.password.clone(), stored)
            .await?
        {
            return Err(CommandError::UsernameTaken(req.username).into());
        }
    }
    match status {
        AccountStatus::Active(rec) => {
            let (token, expires_at_ms) = ctx.issue(account, &rec.password_hash);
            Ok(AuthResponse {
                token,
                expires_at_ms,
                account: Some(account_proto(account, &rec)),
                unread_count: query::unread_count(&kv, account)?,
            })
        }
        // Another replica's registration of the same name reached us while
        // ours was being relayed, and it came first.
        AccountStatus::LostName(_) => Err(CommandError::UsernameTaken(req.username).into()),
        AccountStatus::Deleted(rec) => Err(CommandError::AccountDeleted(rec.username).into()),
        AccountStatus::Unknown => Err(CommandError::UnknownAccount(account).into()),
    }
}
