//! The client API: `chat.v1.Chat`, served over gRPC and gRPC-web.
//!
//! One file per call, each with a `handle` function that takes the shared
//! [`Context`] and the request and returns the response or an [`ApiError`];
//! this file only routes, so a call's whole path is findable by name:
//! `SendMessage` → `send_message.rs` → `writer` → `state::command` /
//! `state::apply`.
//!
//! Every handler validates its input with `chat_shared::validate` before
//! touching state, and authenticates with [`Context::authenticate`] (except
//! CreateAccount, Login and ListServers).

mod change_password;
mod create_account;
mod cursor;
mod delete_account;
mod delete_messages;
pub mod error;
mod get_history;
mod list_accounts;
mod list_conversations;
pub mod list_servers;
mod list_unread;
mod login;
mod mark_read;
mod send_message;
mod subscribe;

pub use subscribe::OpenStreams;

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use chat_shared::proto;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::auth::{Passwords, SessionError, Sessions, SignupLimit, Throttle};
use crate::clock_agreement::ClockAgreement;
use crate::events::EventHub;
use crate::hlc;
use crate::ids::{AccountId, MessageId, RequestId};
use crate::metrics;
use crate::state::query::{self, AccountStatus};
use crate::state::records::{AccountRecord, MessageRecord};
use crate::state::{KvRead, StorageError};
use crate::storage::Store;
use crate::writer::Writer;
pub use error::ApiError;
pub use list_servers::ServerList;

/// Everything a handler may use.
pub struct Context {
    pub replica_id: u32,
    pub store: Arc<Store>,
    pub writer: Writer,
    pub sessions: Sessions,
    pub passwords: Passwords,
    /// Limits password tries per account name and per address.
    pub throttle: Throttle,
    /// Limits new accounts per address.
    pub signups: SignupLimit,
    pub events: EventHub,
    pub servers: Arc<dyn ServerList>,
    /// Whether this replica's clock agrees with the cluster's: while it does
    /// not, every call but `ListServers` is refused.
    pub clock: Arc<ClockAgreement>,
    /// Flips to true when the replica shuts down; ends live streams.
    pub shutdown: watch::Receiver<bool>,
    /// Live `Subscribe` streams per account, to bound them.
    pub streams: OpenStreams,
}

/// An authenticated caller.
pub struct Session {
    pub account: AccountId,
    pub record: AccountRecord,
    /// When the session's token expires, seconds since the epoch.
    pub expires_at: u64,
}

impl Context {
    /// Checks the bearer token, that its account still exists here, and
    /// that the account's password has not changed since it was issued.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Session, ApiError> {
        let (session, current) = self.session_of(request)?;
        if !current {
            return Err(SessionError::PasswordChanged.into());
        }
        Ok(session)
    }

    /// As [`Context::authenticate`], but also accepting a token issued
    /// under an earlier password of the account; says whether the token is
    /// current.
    pub fn session_of<T>(&self, request: &Request<T>) -> Result<(Session, bool), ApiError> {
        let header = match request.metadata().get("authorization") {
            Some(v) => Some(v.to_str().map_err(|_| SessionError::Malformed)?),
            None => None,
        };
        let token = self.sessions.verify(Sessions::bearer(header)?)?;
        let account = token.account;
        match query::account_status(&self.store.reader(), account)? {
            AccountStatus::Active(record) => {
                let current = self.sessions.is_current(&token, &record.password_hash);
                Ok((
                    Session {
                        account,
                        record,
                        expires_at: token.expires_at,
                    },
                    current,
                ))
            }
            AccountStatus::Deleted(_) => Err(ApiError::Unauthenticated(
                "this account has been deleted".into(),
            )),
            AccountStatus::LostName(rec) => Err(lost_name(&rec.username)),
            // Valid token, account not here: created on another replica that
            // has not reached this one. Cannot happen for an acknowledged
            // creation unless this replica was partitioned away; the session
            // is fine, so the client is sent elsewhere (UNAVAILABLE), not
            // back to the login screen.
            AccountStatus::Unknown => Err(ApiError::AccountNotHereYet),
        }
    }

    /// Whether the request carries a genuine token of an account that has
    /// been deleted (on this replica).
    pub fn session_of_deleted_account<T>(&self, request: &Request<T>) -> Result<bool, ApiError> {
        let Some(Ok(header)) = request.metadata().get("authorization").map(|v| v.to_str()) else {
            return Ok(false);
        };
        let Ok(token) = Sessions::bearer(Some(header)).and_then(|t| self.sessions.verify(t)) else {
            return Ok(false);
        };
        Ok(matches!(
            query::account_status(&self.store.reader(), token.account)?,
            AccountStatus::Deleted(_)
        ))
    }

    /// Whether `password` is the one of the account named `name` (its
    /// `hash`; `None` if there is no such account), once the guessing
    /// throttle allows another try for that name from `address`.
    pub async fn check_password(
        &self,
        name: &str,
        address: Option<IpAddr>,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, ApiError> {
        let norm = chat_shared::validate::normalize_username(name);
        let emptied = self
            .throttle
            .begin(&norm, address, std::time::Instant::now())?;
        if emptied.account || emptied.address {
            // Once per emptying, not per refused try: guessers cannot flood
            // the log.
            tracing::warn!(
                account = %norm,
                address = ?address,
                per_account = emptied.account,
                per_address = emptied.address,
                "password tries used up; further tries are throttled"
            );
        }
        let ok = self.passwords.verify(password, hash).await;
        if ok {
            self.throttle
                .succeeded(&norm, address, std::time::Instant::now());
        }
        Ok(ok)
    }

    /// A new session token for `account`, whose password hash in force is
    /// `password_hash`.
    pub fn issue(&self, account: AccountId, password_hash: &str) -> (String, i64) {
        let (token, exp) = self
            .sessions
            .issue(account, password_hash, hlc::wall_clock_ms() / 1000);
        (token, exp as i64 * 1000)
    }
}

pub(crate) fn lost_name(username: &str) -> ApiError {
    ApiError::Unauthenticated(format!(
        "the username '{username}' was registered by someone else at the same moment on \
         another server, and their registration came first; please create a new account \
         with a different username"
    ))
}

pub(crate) fn request_id(bytes: &[u8]) -> Result<RequestId, ApiError> {
    Ok(chat_shared::validate::request_id(bytes)?)
}

pub(crate) fn parse_ids(ids: &[String]) -> Result<Vec<MessageId>, ApiError> {
    chat_shared::validate::id_count(ids.len())?;
    ids.iter().map(|s| Ok(s.parse()?)).collect()
}

pub(crate) fn account_proto(id: AccountId, rec: &AccountRecord) -> proto::Account {
    proto::Account {
        id: id.to_string(),
        username: rec.username.clone(),
        created_at_ms: rec.created.map_or(0, |s| hlc::to_millis(s.hlc)),
        deleted: rec.deleted,
    }
}

/// Builds client messages, looking each account up once.
pub(crate) struct MessageBuilder<'a, R: KvRead> {
    kv: &'a R,
    accounts: HashMap<AccountId, proto::Account>,
}

impl<'a, R: KvRead> MessageBuilder<'a, R> {
    pub fn new(kv: &'a R) -> Self {
        Self {
            kv,
            accounts: HashMap::new(),
        }
    }

    pub fn account(&mut self, id: AccountId) -> Result<proto::Account, StorageError> {
        if let Some(a) = self.accounts.get(&id) {
            return Ok(a.clone());
        }
        let a = match query::account(self.kv, id)? {
            Some(rec) => account_proto(id, &rec),
            // Not arrived here yet (created on another replica).
            None => proto::Account {
                id: id.to_string(),
                ..Default::default()
            },
        };
        self.accounts.insert(id, a.clone());
        Ok(a)
    }

    pub fn message(
        &mut self,
        id: MessageId,
        rec: &MessageRecord,
    ) -> Result<proto::Message, StorageError> {
        let sender = self.account(rec.sender)?;
        let recipient = self.account(rec.recipient)?;
        Ok(message_proto(id, rec, sender, recipient))
    }
}

pub(crate) fn message_proto(
    id: MessageId,
    rec: &MessageRecord,
    sender: proto::Account,
    recipient: proto::Account,
) -> proto::Message {
    proto::Message {
        id: id.to_string(),
        sender: Some(sender),
        recipient: Some(recipient),
        body: rec.body.clone(),
        sent_at_ms: hlc::to_millis(rec.stamp.hlc),
        read: rec.read,
        order: rec.stamp.hlc,
    }
}

/// The tonic service: routes each call to its handler.
#[derive(Clone)]
pub struct ChatApi {
    ctx: Arc<Context>,
}

impl ChatApi {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Runs a call's handler and turns its result into the gRPC reply, counting
/// the call in the metrics under `method` (its name in the proto). While
/// this replica's clock is off from the cluster's, the handler does not run:
/// every call it would answer depends on the clock (a write's timestamp, a
/// token's expiry).
async fn call<T>(
    ctx: &Context,
    method: &'static str,
    handler: impl Future<Output = Result<T, ApiError>>,
) -> Reply<T> {
    match ctx.clock.refusal() {
        None => answer(method, handler).await,
        Some(why) => answer(method, async { Err(ApiError::ClockOff(why)) }).await,
    }
}

/// Runs a handler, counting the call under `method`.
async fn answer<T>(
    method: &'static str,
    handler: impl Future<Output = Result<T, ApiError>>,
) -> Reply<T> {
    let start = Instant::now();
    let reply = handler.await.map(Response::new).map_err(Status::from);
    let code = reply
        .as_ref()
        .map_or_else(Status::code, |_| tonic::Code::Ok);
    metrics::record_call(method, code, start.elapsed());
    reply
}

#[tonic::async_trait]
impl proto::chat_server::Chat for ChatApi {
    async fn create_account(
        &self,
        r: Request<proto::CreateAccountRequest>,
    ) -> Reply<proto::AuthResponse> {
        let address = r.remote_addr().map(|a| a.ip());
        call(
            &self.ctx,
            "CreateAccount",
            create_account::handle(&self.ctx, address, r.into_inner()),
        )
        .await
    }

    async fn login(&self, r: Request<proto::LoginRequest>) -> Reply<proto::AuthResponse> {
        let address = r.remote_addr().map(|a| a.ip());
        call(
            &self.ctx,
            "Login",
            login::handle(&self.ctx, address, r.into_inner()),
        )
        .await
    }

    async fn list_accounts(
        &self,
        r: Request<proto::ListAccountsRequest>,
    ) -> Reply<proto::ListAccountsResponse> {
        call(
            &self.ctx,
            "ListAccounts",
            list_accounts::handle(&self.ctx, r),
        )
        .await
    }

    async fn send_message(
        &self,
        r: Request<proto::SendMessageRequest>,
    ) -> Reply<proto::SendMessageResponse> {
        call(&self.ctx, "SendMessage", send_message::handle(&self.ctx, r)).await
    }

    async fn list_unread(
        &self,
        r: Request<proto::ListUnreadRequest>,
    ) -> Reply<proto::ListUnreadResponse> {
        call(&self.ctx, "ListUnread", list_unread::handle(&self.ctx, r)).await
    }

    async fn list_conversations(
        &self,
        r: Request<proto::ListConversationsRequest>,
    ) -> Reply<proto::ListConversationsResponse> {
        call(
            &self.ctx,
            "ListConversations",
            list_conversations::handle(&self.ctx, r),
        )
        .await
    }

    async fn get_history(
        &self,
        r: Request<proto::GetHistoryRequest>,
    ) -> Reply<proto::GetHistoryResponse> {
        call(&self.ctx, "GetHistory", get_history::handle(&self.ctx, r)).await
    }

    async fn mark_read(
        &self,
        r: Request<proto::MarkReadRequest>,
    ) -> Reply<proto::MarkReadResponse> {
        call(&self.ctx, "MarkRead", mark_read::handle(&self.ctx, r)).await
    }

    async fn delete_messages(
        &self,
        r: Request<proto::DeleteMessagesRequest>,
    ) -> Reply<proto::DeleteMessagesResponse> {
        call(
            &self.ctx,
            "DeleteMessages",
            delete_messages::handle(&self.ctx, r),
        )
        .await
    }

    async fn change_password(
        &self,
        r: Request<proto::ChangePasswordRequest>,
    ) -> Reply<proto::AuthResponse> {
        call(
            &self.ctx,
            "ChangePassword",
            change_password::handle(&self.ctx, r),
        )
        .await
    }

    async fn delete_account(
        &self,
        r: Request<proto::DeleteAccountRequest>,
    ) -> Reply<proto::DeleteAccountResponse> {
        call(
            &self.ctx,
            "DeleteAccount",
            delete_account::handle(&self.ctx, r),
        )
        .await
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<proto::Event, Status>> + Send>>;

    async fn subscribe(&self, r: Request<proto::SubscribeRequest>) -> Reply<Self::SubscribeStream> {
        call(&self.ctx, "Subscribe", subscribe::handle(&self.ctx, r)).await
    }

    async fn list_servers(
        &self,
        _r: Request<proto::ListServersRequest>,
    ) -> Reply<proto::ListServersResponse> {
        // Answered whatever the clock: how clients find the other replicas.
        answer("ListServers", async { Ok(list_servers::handle(&self.ctx)) }).await
    }
}
