//! The live event stream, kept open across replica failures.
//!
//! A `Subscribe` stream lives on one replica and dies with it. The
//! subscription re-opens it on whichever replica the client uses next: when
//! the stream breaks (which is often how a client first learns that its
//! replica died, so it triggers the failover itself) and when a call or the
//! user moved the client elsewhere. Every (re)opened stream starts with
//! `Subscribed`, the signal to refresh what is shown: the protocol does not
//! replay what happened in between.

use std::pin::pin;
use std::time::Duration;

use futures_util::future::{Either, select};
use tonic::Streaming;

use super::{Auth, CallError, Client, Connector, Timer, is_failover};
use crate::proto;

/// How long to wait before re-opening a stream that a replica ended
/// without an error (it is shutting down, or misbehaving): long enough not
/// to spin, short enough not to be noticed.
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

/// How often to look whether a password change under way has finished.
const PASSWORD_CHANGE_POLL: Duration = Duration::from_millis(20);

/// Live events of the logged-in account. Dropping it closes the stream.
pub struct Subscription<C: Connector, T: Timer> {
    client: Client<C, T>,
    /// The open stream and the client generation it was opened in.
    stream: Option<(u64, Streaming<proto::Event>)>,
    /// The session token the stream was opened with.
    token: Option<String>,
}

impl<C: Connector, T: Timer> Subscription<C, T> {
    pub(super) fn new(client: Client<C, T>) -> Self {
        Self {
            client,
            stream: None,
            token: None,
        }
    }

    /// Whether a stream is open right now (between a failure and the next
    /// `next()`, it is not).
    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// The next event. Transport failures are handled inside (failover,
    /// re-open, backoff), and so is the end of a session that the client's
    /// own password change replaced (the stream re-opens with the new one);
    /// an error means the stream cannot go on: the session ended
    /// (`UNAUTHENTICATED`: the account was deleted, or its password changed
    /// elsewhere), the client logged out, or it gave up
    /// ([`CallError::Offline`]).
    pub async fn next(&mut self) -> Result<proto::Event, CallError> {
        loop {
            let (generation, stream) = match self.stream.as_mut() {
                Some((generation, stream)) => (*generation, stream),
                None => {
                    self.open().await?;
                    continue;
                }
            };
            let outcome = {
                let switched = pin!(self.client.inner.generation.changed_since(generation));
                let event = pin!(stream.message());
                match select(event, switched).await {
                    Either::Left((outcome, _)) => Some(outcome),
                    Either::Right(_) => None,
                }
            };
            match outcome {
                Some(Ok(Some(event))) => return Ok(event),
                Some(Ok(None)) => {
                    self.stream = None;
                    self.client.inner.timer.sleep(REOPEN_PAUSE).await;
                    self.client.fail_over(generation).await?;
                }
                Some(Err(status)) if !is_failover(&status) => {
                    self.stream = None;
                    if status.code() == tonic::Code::Unauthenticated
                        && self.session_replaced().await
                    {
                        continue;
                    }
                    return Err(CallError::Rejected(status));
                }
                Some(Err(_)) => {
                    self.stream = None;
                    self.client.after_unserved().await?;
                    self.client.fail_over(generation).await?;
                }
                // The client moved to another replica: follow it.
                None => self.stream = None,
            }
        }
    }

    /// Whether the session the stream was opened with has been replaced
    /// by the client's own password change (which ends the streams of the
    /// old session; the new one gets a new stream). A change under way is
    /// waited for: its stream may end before its answer arrives.
    async fn session_replaced(&self) -> bool {
        while self.client.changing_password() {
            self.client.inner.timer.sleep(PASSWORD_CHANGE_POLL).await;
        }
        let now = self.client.session().map(|s| s.token);
        now.is_some() && now != self.token
    }

    /// Opens the stream on the replica in use, failing over until one
    /// accepts it.
    async fn open(&mut self) -> Result<(), CallError> {
        let timeout = self.client.inner.config.call_timeout;
        loop {
            let (generation, server, mut chat) = self.client.connected().await?;
            self.token = self.client.session().map(|s| s.token);
            let mut request =
                self.client
                    .request(proto::SubscribeRequest {}, Auth::Session, timeout)?;
            // The deadline is for opening only; the stream itself lives on.
            request.metadata_mut().remove("grpc-timeout");
            match self.client.deadline(chat.subscribe(request), timeout).await {
                Some(Ok(response)) => {
                    self.client.answered(generation, &server);
                    self.stream = Some((generation, response.into_inner()));
                    return Ok(());
                }
                Some(Err(status)) if !is_failover(&status) => {
                    if status.code() == tonic::Code::Unauthenticated
                        && self.session_replaced().await
                    {
                        continue;
                    }
                    return Err(CallError::Rejected(status));
                }
                Some(Err(_)) | None => {
                    self.client.after_unserved().await?;
                    self.client.fail_over(generation).await?;
                }
            }
        }
    }
}
