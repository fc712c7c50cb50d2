//! Subscribe: live events for the caller's account.
//!
//! The stream starts with `Subscribed` (after which no change is missed) and
//! then carries every change to the caller's conversations as this replica
//! applies it -- including changes accepted by other replicas, which arrive
//! here by replication. It ends when the client cancels, the account is
//! deleted or its password changed, or the session's token expires
//! (`UNAUTHENTICATED`: the session the stream was opened with has ended:
//! a stream must not outlive what a call with its token would be allowed),
//! or the replica shuts down; a client
//! then re-subscribes (anywhere) and refreshes its views.
//!
//! Each stream holds a buffer and a task on this replica, so one account
//! may hold at most `SUBSCRIPTIONS_PER_ACCOUNT` of them here at a time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chat_shared::limits::SUBSCRIPTIONS_PER_ACCOUNT;
use chat_shared::proto::{
    Event, Lagged, MessagesDeleted, MessagesRead, SubscribeRequest, Subscribed, event,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

use super::{ApiError, ChatApi, Context, MessageBuilder};
use crate::auth::{SessionError, Sessions};
use crate::ids::AccountId;
use crate::state::{Change, query};

/// Events buffered for a client before the stream applies backpressure.
const BUFFER: usize = 64;

pub async fn handle(
    ctx: &Arc<Context>,
    req: Request<SubscribeRequest>,
) -> Result<<ChatApi as chat_shared::proto::chat_server::Chat>::SubscribeStream, ApiError> {
    // Subscribe before authenticating and reading the unread count, so
    // that nothing falls between: not a message, not a password change
    // that ends this session.
    let changes = ctx.events.subscribe();
    let session = ctx.authenticate(&req)?;
    let slot = ctx.streams.open(session.account)?;
    let unread_count = query::unread_count(&ctx.store.reader(), session.account)?;
    let (tx, rx) = mpsc::channel(BUFFER);
    let first = Event {
        kind: Some(event::Kind::Subscribed(Subscribed {
            server_id: ctx.replica_id,
            unread_count,
        })),
    };
    tx.send(Ok(first)).await.ok();
    let me = Me {
        account: session.account,
        password_hash: session.record.password_hash,
        expires_at: session.expires_at,
    };
    tokio::spawn(forward(ctx.clone(), me, changes, tx, slot));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// How many live streams each account has open on this replica.
#[derive(Default)]
pub struct OpenStreams(Arc<Mutex<HashMap<AccountId, usize>>>);

/// One open stream's place in the count, given back when dropped.
struct StreamSlot {
    counts: Arc<Mutex<HashMap<AccountId, usize>>>,
    account: AccountId,
}

impl OpenStreams {
    fn open(&self, account: AccountId) -> Result<StreamSlot, ApiError> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(account).or_default();
        if *n >= SUBSCRIPTIONS_PER_ACCOUNT {
            return Err(ApiError::TooManyStreams(SUBSCRIPTIONS_PER_ACCOUNT));
        }
        *n += 1;
        Ok(StreamSlot {
            counts: self.0.clone(),
            account,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

/// The session a stream serves.
struct Me {
    account: AccountId,
    /// The password hash in force when the stream was opened.
    password_hash: String,
    /// When the session's token expires, seconds since the epoch.
    expires_at: u64,
}

/// Forwards the changes that concern `me` until the stream ends; the
/// stream's `slot` is given back then.
async fn forward(
    ctx: Arc<Context>,
    me: Me,
    mut changes: broadcast::Receiver<Arc<Vec<Change>>>,
    tx: mpsc::Sender<Result<Event, Status>>,
    _slot: StreamSlot,
) {
    let mut shutdown = ctx.shutdown.clone();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let expiry = tokio::time::sleep(Sessions::remaining(me.expires_at, now_ms));
    tokio::pin!(expiry);
    loop {
        let batch = tokio::select! {
            batch = changes.recv() => batch,
            _ = tx.closed() => return,
            _ = &mut expiry => {
                let _ = tx.send(Err(ApiError::from(SessionError::Expired).into())).await;
                return;
            }
            _ = shutdown.changed() => {
                let _ = tx.send(Err(Status::unavailable("the server is shutting down"))).await;
                return;
            }
        };
        let events = match batch {
            Ok(batch) => match events_for(&ctx, &me, &batch) {
                Ok(events) => events,
                Err(status) => vec![Err(status)],
            },
            Err(broadcast::error::RecvError::Lagged(missed)) => vec![Ok(Event {
                kind: Some(event::Kind::Lagged(Lagged { missed })),
            })],
            Err(broadcast::error::RecvError::Closed) => return,
        };
        for e in events {
            let end = e.is_err();
            if tx.send(e).await.is_err() || end {
                return;
            }
        }
    }
}

/// The events one batch of changes means for account `me`.
fn events_for(
    ctx: &Context,
    session: &Me,
    batch: &[Change],
) -> Result<Vec<Result<Event, Status>>, Status> {
    let me = session.account;
    let mut out = Vec::new();
    let mut deleted = BTreeSet::new();
    let mut read = BTreeSet::new();
    let kv = ctx.store.reader();
    let mut build = MessageBuilder::new(&kv);
    let api = |e: crate::state::StorageError| Status::from(ApiError::from(e));
    for change in batch {
        match *change {
            Change::MessageStored {
                id,
                sender,
                recipient,
            } if sender == me || recipient == me => {
                // Deleted again before we got here: nothing to show.
                if let Some(rec) = query::live_message(&kv, id).map_err(api)? {
                    let m = build.message(id, &rec).map_err(api)?;
                    out.push(Ok(Event {
                        kind: Some(event::Kind::Message(m)),
                    }));
                }
            }
            Change::MessageDeleted {
                id,
                sender,
                recipient,
            } if sender == me || recipient == me => {
                deleted.insert(id.to_string());
            }
            Change::MessageRead {
                id,
                sender,
                recipient,
            } if sender == me || recipient == me => {
                read.insert(id.to_string());
            }
            Change::AccountDeleted { account } if account == me => {
                out.push(Err(Status::unauthenticated(
                    "this account has been deleted",
                )));
                return Ok(out);
            }
            // Only to those who have a conversation with it: nobody else
            // shows the account anywhere that would change.
            Change::AccountDeleted { account }
                if query::has_conversation(&kv, me, account).map_err(api)? =>
            {
                // Read after the whole batch: deleted, even if a message of
                // the batch looked the account up first. (Its creation may
                // not be here yet: then only the id is known.)
                let peer = build.account(account).map_err(api)?;
                out.push(Ok(Event {
                    kind: Some(event::Kind::PeerDeleted(chat_shared::proto::Account {
                        deleted: true,
                        ..peer
                    })),
                }));
            }
            Change::PasswordChanged { account } if account == me => {
                let in_force = query::account(&kv, me)
                    .map_err(api)?
                    .map(|r| r.password_hash);
                if in_force.as_ref() != Some(&session.password_hash) {
                    out.push(Err(Status::from(ApiError::from(
                        crate::auth::SessionError::PasswordChanged,
                    ))));
                    return Ok(out);
                }
            }
            _ => {}
        }
    }
    if !deleted.is_empty() || !read.is_empty() {
        let unread_count = query::unread_count(&kv, me).map_err(api)?;
        if !deleted.is_empty() {
            out.push(Ok(Event {
                kind: Some(event::Kind::Deleted(MessagesDeleted {
                    message_ids: deleted.into_iter().collect(),
                    unread_count,
                })),
            }));
        }
        if !read.is_empty() {
            out.push(Ok(Event {
                kind: Some(event::Kind::Read(MessagesRead {
                    message_ids: read.into_iter().collect(),
                    unread_count,
                })),
            }));
        }
    }
    Ok(out)
}
