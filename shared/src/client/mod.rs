//! The client core: everything a chat client does besides drawing.
//!
//! A [`Client`] owns the session, the server list, the one-request-at-a-time
//! queue, and the failover and retry policy, so that the browser app and
//! native tools (the fault-injection tests among them) run the very same
//! logic; only the [`Connector`] and [`Timer`] differ (see [`transport`]).
//!
//! # Failover
//!
//! Any replica serves any request and a session is valid on all of them
//! (`docs/protocol.md`), so a client needs no home replica: it uses one until
//! that one fails, then moves on. A call that fails with a transport error, a
//! missed deadline or `UNAVAILABLE` ([`is_failover`]) is re-sent, unchanged
//! and with the same request id, to the next replica that answers
//! `ListServers` -- whose answer also replaces the server list. The request
//! id is what makes this safe: a write that reached the dead replica and is
//! re-sent elsewhere is applied once. When no replica answers, the client
//! says so ([`Connection::Offline`]) and keeps trying with exponential
//! backoff; the call itself waits (or gives up after
//! [`Config::offline_rounds`], if set).
//!
//! Calls are serialised: a user action is one request, sent and (if need
//! be) re-sent until it completes, before the next one starts. The live
//! [`Subscription`] runs beside them and follows the client to whichever
//! replica it uses.

mod error;
#[cfg(feature = "client-native")]
pub mod native;
pub mod servers;
mod subscription;
pub mod transport;
pub mod watch;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::{Either, select};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

pub use error::{CallError, is_failover};
pub use servers::ServerInfo;
pub use subscription::Subscription;
pub use transport::{ChatTransport, ConnectError, Connector, Timer};
pub use watch::Watch;

use crate::limits::REQUEST_ID_BYTES;
use crate::proto::{self, chat_client::ChatClient};
use crate::validate;

/// Timing of the client's failover and retries.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a call may take before it counts as failed and is re-sent
    /// elsewhere. Above a replica's worst honest answer time: a write waits
    /// for its relays, which give up on a dead peer after 2 s.
    pub call_timeout: Duration,
    /// How long a replica may take to answer `ListServers` when the client
    /// tries it as the next one to use.
    pub probe_timeout: Duration,
    /// First wait after every replica failed; doubled each round up to
    /// `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Give up a call (with [`CallError::Offline`]) after this many rounds in
    /// which no replica answered; `None` (the default) retries forever,
    /// which is what an interactive client wants.
    pub offline_rounds: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            probe_timeout: Duration::from_millis(1500),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            offline_rounds: None,
        }
    }
}

/// Where the client stands, for a connection indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Looking for a first replica.
    Connecting,
    /// Using this replica; its last answer was fine.
    Connected(ServerInfo),
    /// The replica in use failed; trying the others.
    FailingOver { from: ServerInfo },
    /// No replica answered in the last round; the next round starts in
    /// `retry_in`.
    Offline { round: u32, retry_in: Duration },
}

/// A logged-in account and its session token (valid on every replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token: String,
    pub expires_at_ms: i64,
    pub account: proto::Account,
}

impl Session {
    fn from_auth(auth: &proto::AuthResponse) -> Self {
        Self {
            token: auth.token.clone(),
            expires_at_ms: auth.expires_at_ms,
            account: auth.account.clone().unwrap_or_default(),
        }
    }
}

/// The client core. Cheap to clone; clones share everything.
pub struct Client<C: Connector, T: Timer> {
    inner: Arc<Inner<C, T>>,
}

impl<C: Connector, T: Timer> Clone for Client<C, T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<C: Connector, T: Timer> {
    connector: C,
    timer: T,
    config: Config,
    seeds: Vec<String>,
    state: Mutex<State<C::Transport>>,
    /// One user request at a time.
    queue: futures_util::lock::Mutex<()>,
    /// One failover at a time: whoever notices a failure first moves the
    /// client; the others see the new generation and just retry.
    switching: futures_util::lock::Mutex<()>,
    connection: Watch<Connection>,
    servers: Watch<Vec<ServerInfo>>,
    /// Bumped on every switch of replica; the subscription follows it.
    generation: Watch<u64>,
}

struct State<S> {
    current: Option<Current<S>>,
    session: Option<Session>,
    /// `ChangePassword` calls under way: the session they replace may be
    /// refused meanwhile, which is not the end of the client's session.
    password_changes: usize,
    /// Attempts in a row that a replica did not serve (failover codes,
    /// missed deadlines) since one last answered a call.
    unserved: u32,
}

struct Current<S> {
    server: ServerInfo,
    client: ChatClient<S>,
}

/// Whether a call carries the session token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    Session,
}

impl<C: Connector, T: Timer> Client<C, T> {
    /// A client that starts with the replicas at `seeds` (base URLs; a
    /// browser passes its own origin). It connects on first use.
    pub fn new(connector: C, timer: T, seeds: Vec<String>, config: Config) -> Self {
        let seeds: Vec<String> = seeds
            .into_iter()
            .map(|s| s.trim_end_matches('/').to_string())
            .collect();
        let initial = seeds.iter().map(ServerInfo::seed).collect();
        Self {
            inner: Arc::new(Inner {
                connector,
                timer,
                config,
                seeds,
                state: Mutex::new(State {
                    current: None,
                    session: None,
                    password_changes: 0,
                    unserved: 0,
                }),
                queue: futures_util::lock::Mutex::new(()),
                switching: futures_util::lock::Mutex::new(()),
                connection: Watch::new(Connection::Connecting),
                servers: Watch::new(initial),
                generation: Watch::new(0),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<C::Transport>> {
        // Every update of the state is a plain assignment: a panic elsewhere
        // cannot leave it torn, so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Connection state, observable for an indicator.
    pub fn connection(&self) -> &Watch<Connection> {
        &self.inner.connection
    }

    /// The server list as last fetched, observable.
    pub fn servers(&self) -> &Watch<Vec<ServerInfo>> {
        &self.inner.servers
    }

    /// The replica in use, if any.
    pub fn current_server(&self) -> Option<ServerInfo> {
        self.state().current.as_ref().map(|c| c.server.clone())
    }

    pub fn session(&self) -> Option<Session> {
        self.state().session.clone()
    }

    /// Adopts a session kept from earlier (e.g. a token restored after a page
    /// reload), or forgets it with `None`.
    pub fn set_session(&self, session: Option<Session>) {
        self.state().session = session;
    }

    /// Forgets the session. The protocol has no logout call: a token is a
    /// bearer credential that simply stops being sent.
    pub fn logout(&self) {
        self.set_session(None);
    }

    /// Sends one request through the failover machinery and returns its
    /// answer: waits for its turn, sends `msg` to the replica in use (with
    /// the session token and a deadline), and on a transport failure,
    /// deadline or `UNAVAILABLE` re-sends the *same* message -- same request
    /// id -- to the next replica, until an answer or a business error.
    ///
    /// `rpc` picks the method, e.g. `|mut c, r| async move {
    /// c.send_message(r).await }`. Use it for calls the typed methods below
    /// do not cover, such as a retry under a chosen request id.
    pub async fn call<M, R, F, Fut>(&self, msg: M, rpc: F) -> Result<R, CallError>
    where
        M: Clone,
        F: FnMut(ChatClient<C::Transport>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let auth = if self.session().is_some() {
            Auth::Session
        } else {
            Auth::None
        };
        self.send(msg, auth, rpc).await
    }

    async fn send<M, R, F, Fut>(&self, msg: M, auth: Auth, mut rpc: F) -> Result<R, CallError>
    where
        M: Clone,
        F: FnMut(ChatClient<C::Transport>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let _turn = self.inner.queue.lock().await;
        loop {
            let (generation, server, client) = self.connected().await?;
            let request = self.request(msg.clone(), auth, self.inner.config.call_timeout)?;
            match self
                .deadline(rpc(client, request), self.inner.config.call_timeout)
                .await
            {
                Some(Ok(response)) => {
                    self.answered(generation, &server);
                    return Ok(response.into_inner());
                }
                Some(Err(status)) if !is_failover(&status) => {
                    self.answered(generation, &server);
                    return Err(CallError::Rejected(status));
                }
                Some(Err(_)) | None => {
                    self.after_unserved().await?;
                    self.fail_over(generation).await?;
                }
            }
        }
    }

    /// Paces attempts that replicas do not serve. Failover finds a replica
    /// by `ListServers`, which a replica answers even when it cannot serve
    /// calls (its disk failed, its clock is off, it has not received the
    /// caller's account yet): so once every known replica has failed an
    /// attempt in a row, wait with backoff before the next, as when none
    /// answers at all -- instead of going round them as fast as they
    /// answer -- and give up after `offline_rounds` such rounds.
    pub(super) async fn after_unserved(&self) -> Result<(), CallError> {
        let unserved = {
            let mut state = self.state();
            state.unserved = state.unserved.saturating_add(1);
            state.unserved
        };
        let replicas = (self.inner.servers.get().len() as u32).max(1);
        if unserved % replicas != 0 {
            return Ok(());
        }
        self.offline_round(unserved / replicas).await
    }

    /// After `round` (from 1) rounds in a row in which no replica answered
    /// or served: says so, and waits with backoff (doubling from
    /// `backoff_initial` up to `backoff_max`) -- or gives up, after
    /// `offline_rounds`.
    async fn offline_round(&self, round: u32) -> Result<(), CallError> {
        let config = &self.inner.config;
        if config.offline_rounds.is_some_and(|limit| round >= limit) {
            self.inner.connection.set(Connection::Offline {
                round,
                retry_in: Duration::ZERO,
            });
            return Err(CallError::Offline);
        }
        let backoff = config
            .backoff_initial
            .saturating_mul(1 << round.saturating_sub(1).min(16))
            .min(config.backoff_max);
        self.inner.connection.set(Connection::Offline {
            round,
            retry_in: backoff,
        });
        self.inner.timer.sleep(backoff).await;
        Ok(())
    }

    /// Builds one attempt's request: the deadline travels along (so the
    /// replica can give up too), and the token when the call needs one.
    fn request<M>(&self, msg: M, auth: Auth, timeout: Duration) -> Result<Request<M>, CallError> {
        let mut request = Request::new(msg);
        request.set_timeout(timeout);
        if auth == Auth::Session {
            let token = self
                .session()
                .map(|s| s.token)
                .ok_or(CallError::NotLoggedIn)?;
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| CallError::NotLoggedIn)?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    /// Runs `fut` for at most `limit`; `None` when the deadline passed.
    async fn deadline<F: Future>(&self, fut: F, limit: Duration) -> Option<F::Output> {
        let fut = pin!(fut);
        let sleep = pin!(self.inner.timer.sleep(limit));
        match select(fut, sleep).await {
            Either::Left((out, _)) => Some(out),
            Either::Right(_) => None,
        }
    }

    /// A replica answered: it is usable, whatever it said.
    fn answered(&self, generation: u64, server: &ServerInfo) {
        self.state().unserved = 0;
        if self.inner.generation.get() == generation
            && self.inner.connection.get() != Connection::Connected(server.clone())
        {
            self.inner
                .connection
                .set(Connection::Connected(server.clone()));
        }
    }

    /// The replica to use now, finding one first if there is none.
    async fn connected(&self) -> Result<(u64, ServerInfo, ChatClient<C::Transport>), CallError> {
        loop {
            let generation = self.inner.generation.get();
            if let Some(current) = &self.state().current {
                return Ok((generation, current.server.clone(), current.client.clone()));
            }
            self.fail_over(generation).await?;
        }
    }

    /// Moves the client off the replica it used in `failed_generation`: tries
    /// every known replica (see [`servers::candidates`]) until one answers
    /// `ListServers`, adopts it and its list, and bumps the generation. When
    /// a round finds none, waits with backoff and tries again. Returns at
    /// once if someone else already switched.
    async fn fail_over(&self, failed_generation: u64) -> Result<(), CallError> {
        let _switching = self.inner.switching.lock().await;
        if self.inner.generation.get() != failed_generation {
            return Ok(());
        }
        let failed = self.state().current.take().map(|c| c.server);
        self.inner.connection.set(match &failed {
            Some(from) => Connection::FailingOver { from: from.clone() },
            None => Connection::Connecting,
        });
        let mut round = 0;
        loop {
            let known = self.inner.servers.get();
            for candidate in servers::candidates(&known, &self.inner.seeds, failed.as_ref()) {
                if self.try_switch(&candidate.url).await.is_some() {
                    return Ok(());
                }
            }
            round += 1;
            self.offline_round(round).await?;
        }
    }

    /// Asks the replica at `url` for the server list; if it answers in
    /// time, makes it the replica in use (caller holds `switching`).
    async fn try_switch(&self, url: &str) -> Option<ServerInfo> {
        let mut client = self.inner.connector.client(url).ok()?;
        let timeout = self.inner.config.probe_timeout;
        let request = self
            .request(proto::ListServersRequest {}, Auth::None, timeout)
            .ok()?;
        let answer = self.deadline(client.list_servers(request), timeout).await;
        let response = answer?.ok()?;
        let response = response.into_inner();
        let list = servers::from_response(&response);
        let server = list
            .iter()
            .find(|s| s.id == response.this_server_id)
            .cloned()
            .map(|s| ServerInfo {
                live: true,
                url: url.to_string(),
                ..s
            })
            .unwrap_or_else(|| ServerInfo {
                id: response.this_server_id,
                url: url.to_string(),
                live: true,
            });
        self.inner.servers.set(list);
        self.state().current = Some(Current {
            server: server.clone(),
            client,
        });
        let generation = self.inner.generation.get() + 1;
        self.inner.generation.set(generation);
        self.inner
            .connection
            .set(Connection::Connected(server.clone()));
        Some(server)
    }

    /// Switches to the replica at `url` by hand (a servers panel's "use
    /// this one"). Fails, leaving the client where it was, if that replica
    /// does not answer. The subscription follows.
    pub async fn switch_to(&self, url: &str) -> Result<ServerInfo, CallError> {
        let _switching = self.inner.switching.lock().await;
        let url = url.trim_end_matches('/');
        self.try_switch(url)
            .await
            .ok_or_else(|| CallError::Unreachable(url.to_string()))
    }

    /// Fetches the server list from the replica in use (failing over if it
    /// does not answer) and adopts it. Call it now and then: the client
    /// also refreshes on every switch.
    pub async fn refresh_servers(&self) -> Result<Vec<ServerInfo>, CallError> {
        let response = self
            .send(
                proto::ListServersRequest {},
                Auth::None,
                |mut c, r| async move { c.list_servers(r).await },
            )
            .await?;
        let list = servers::from_response(&response);
        self.inner.servers.set(list.clone());
        Ok(list)
    }

    /// Refreshes the server list every `interval`, forever. Spawn it on the
    /// event loop next to the client; dropping it stops it.
    pub async fn keep_servers_fresh(&self, interval: Duration) {
        loop {
            self.inner.timer.sleep(interval).await;
            let _ = self.refresh_servers().await;
        }
    }

    // --- The client API, one method per call ------------------------------

    /// Registers an account and starts its session.
    pub async fn create_account(
        &self,
        username: &str,
        password: &str,
    ) -> Result<proto::AuthResponse, CallError> {
        validate::username(username)?;
        validate::password(password)?;
        let msg = proto::CreateAccountRequest {
            request_id: new_request_id(),
            username: username.to_string(),
            password: password.to_string(),
        };
        let auth = self
            .send(msg, Auth::None, |mut c, r| async move {
                c.create_account(r).await
            })
            .await?;
        self.set_session(Some(Session::from_auth(&auth)));
        Ok(auth)
    }

    /// Starts a session for an existing account.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<proto::AuthResponse, CallError> {
        let msg = proto::LoginRequest {
            username: username.to_string(),
            password: password.to_string(),
        };
        let auth = self
            .send(msg, Auth::None, |mut c, r| async move { c.login(r).await })
            .await?;
        self.set_session(Some(Session::from_auth(&auth)));
        Ok(auth)
    }

    /// One page of the account directory (`pattern` with `*` and `?`).
    pub async fn list_accounts(
        &self,
        pattern: &str,
        page_size: u32,
        cursor: &str,
    ) -> Result<proto::ListAccountsResponse, CallError> {
        validate::pattern(pattern)?;
        let msg = proto::ListAccountsRequest {
            pattern: pattern.to_string(),
            page_size,
            cursor: cursor.to_string(),
        };
        self.send(msg, Auth::Session, |mut c, r| async move {
            c.list_accounts(r).await
        })
        .await
    }

    /// Sends a message. The request id is drawn once here and reused by
    /// every retry, so the message exists once however often it is sent.
    pub async fn send_message(
        &self,
        recipient_id: &str,
        body: &str,
    ) -> Result<proto::Message, CallError> {
        validate::message_body(body)?;
        let msg = proto::SendMessageRequest {
            request_id: new_request_id(),
            recipient_id: recipient_id.to_string(),
            body: body.to_string(),
        };
        let response = self
            .send(msg, Auth::Session, |mut c, r| async move {
                c.send_message(r).await
            })
            .await?;
        Ok(response.message.unwrap_or_default())
    }

    pub async fn list_unread(&self, limit: u32) -> Result<proto::ListUnreadResponse, CallError> {
        self.send(
            proto::ListUnreadRequest { limit },
            Auth::Session,
            |mut c, r| async move { c.list_unread(r).await },
        )
        .await
    }

    pub async fn list_conversations(
        &self,
        page_size: u32,
        cursor: &str,
    ) -> Result<proto::ListConversationsResponse, CallError> {
        let msg = proto::ListConversationsRequest {
            page_size,
            cursor: cursor.to_string(),
        };
        self.send(msg, Auth::Session, |mut c, r| async move {
            c.list_conversations(r).await
        })
        .await
    }

    /// One page of a conversation, newest first.
    pub async fn get_history(
        &self,
        peer_id: &str,
        page_size: u32,
        cursor: &str,
    ) -> Result<proto::GetHistoryResponse, CallError> {
        let msg = proto::GetHistoryRequest {
            peer_id: peer_id.to_string(),
            page_size,
            cursor: cursor.to_string(),
        };
        self.send(msg, Auth::Session, |mut c, r| async move {
            c.get_history(r).await
        })
        .await
    }

    /// Marks received messages read; returns the unread count after.
    pub async fn mark_read(&self, message_ids: Vec<String>) -> Result<u64, CallError> {
        validate::id_count(message_ids.len())?;
        let msg = proto::MarkReadRequest {
            request_id: new_request_id(),
            message_ids,
        };
        let response = self
            .send(msg, Auth::Session, |mut c, r| async move {
                c.mark_read(r).await
            })
            .await?;
        Ok(response.unread_count)
    }

    /// Deletes messages for both parties; returns the unread count after.
    pub async fn delete_messages(&self, message_ids: Vec<String>) -> Result<u64, CallError> {
        validate::id_count(message_ids.len())?;
        let msg = proto::DeleteMessagesRequest {
            request_id: new_request_id(),
            message_ids,
        };
        let response = self
            .send(msg, Auth::Session, |mut c, r| async move {
                c.delete_messages(r).await
            })
            .await?;
        Ok(response.unread_count)
    }

    /// Replaces the account's password (the current one confirms it) and
    /// adopts the new session the answer carries; every other session of
    /// the account ends.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(), CallError> {
        validate::password(new)?;
        let msg = proto::ChangePasswordRequest {
            request_id: new_request_id(),
            current_password: current.to_string(),
            new_password: new.to_string(),
        };
        let _changing = PasswordChange::begin(self);
        let auth = self
            .send(msg, Auth::Session, |mut c, r| async move {
                c.change_password(r).await
            })
            .await?;
        self.set_session(Some(Session::from_auth(&auth)));
        Ok(())
    }

    /// Ends every other session of the account -- a lost phone, a shared
    /// computer -- and keeps this one: a password change to the same
    /// password (a new request, so a new hash with a salt of its own,
    /// which no other token was issued under; docs/protocol.md).
    pub async fn sign_out_other_devices(&self, password: &str) -> Result<(), CallError> {
        self.change_password(password, password).await
    }

    /// Whether a `ChangePassword` call is under way.
    fn changing_password(&self) -> bool {
        self.state().password_changes > 0
    }

    /// Deletes the account (the password confirms it) and forgets the
    /// session.
    pub async fn delete_account(&self, password: &str) -> Result<(), CallError> {
        let msg = proto::DeleteAccountRequest {
            request_id: new_request_id(),
            password: password.to_string(),
        };
        self.send(msg, Auth::Session, |mut c, r| async move {
            c.delete_account(r).await
        })
        .await?;
        self.logout();
        Ok(())
    }

    /// The live event stream of the session's account, following the client
    /// across replicas. Nothing is sent until the first `next()`.
    pub fn subscribe(&self) -> Subscription<C, T> {
        Subscription::new(self.clone())
    }
}

/// Counts a `ChangePassword` call as under way for as long as it lives
/// (dropped with the call's future, however that ends).
struct PasswordChange<'a, C: Connector, T: Timer>(&'a Client<C, T>);

impl<'a, C: Connector, T: Timer> PasswordChange<'a, C, T> {
    fn begin(client: &'a Client<C, T>) -> Self {
        client.state().password_changes += 1;
        Self(client)
    }
}

impl<C: Connector, T: Timer> Drop for PasswordChange<'_, C, T> {
    fn drop(&mut self) {
        self.0.state().password_changes -= 1;
    }
}

/// A fresh random request id: one per user action, reused by its retries.
pub fn new_request_id() -> Vec<u8> {
    let mut id = [0u8; REQUEST_ID_BYTES];
    while id == [0; REQUEST_ID_BYTES] {
        getrandom::fill(&mut id).expect("the platform has no random source");
    }
    id.to_vec()
}
