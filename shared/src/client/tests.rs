//! The failover and retry policy against in-process fake replicas.
//!
//! Each fake is the generated `ChatServer` (so requests go through the real
//! codec) behind a transport wrapper that can make the replica refuse
//! connections, hang, answer `UNAVAILABLE`, or apply a request and then
//! drop the connection. Time is tokio's paused clock, so deadlines and
//! backoff are exact and instant.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::{Service, StdError, http};
use tonic::{Code, Request, Response, Status};

use super::native::TokioTimer;
use super::*;
use crate::proto::chat_server::{Chat, ChatServer};
use crate::proto::{self, event};

const TOKEN: &str = "good-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    /// Connection refused.
    Down,
    /// Accepts the connection, never answers.
    Hang,
    /// Answers every call with `UNAVAILABLE`.
    Unavailable,
    /// Handles the call (so a write is applied), then the connection breaks
    /// before the answer arrives.
    ApplyThenDrop,
}

/// What a fake replica saw.
struct Replica {
    id: u32,
    url: String,
    mode: Mutex<Mode>,
    /// `ListServers` answer (default: every replica, live).
    servers: Mutex<Vec<proto::Server>>,
    /// Every request that reached the transport: (when, gRPC path).
    attempts: Mutex<Vec<(Instant, String)>>,
    /// Request ids of the `SendMessage` calls the service handled.
    sends: Mutex<Vec<Vec<u8>>>,
    /// Calls the service handled, by method name.
    handled: Mutex<Vec<&'static str>>,
    /// Calls other than `ListServers` still to refuse with `UNAVAILABLE`
    /// (as a replica that answers the server list but cannot serve: a
    /// failed disk, a wrong clock, an account it has not received yet).
    refuse_calls: Mutex<u32>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// How long `SendMessage` takes.
    send_delay: Mutex<Duration>,
    /// Open subscriptions.
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Result<proto::Event, Status>>>>,
    /// The session token it accepts.
    token: Mutex<String>,
}

impl Replica {
    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn sends(&self) -> Vec<Vec<u8>> {
        self.sends.lock().unwrap().clone()
    }

    fn handled(&self, method: &str) -> usize {
        self.handled
            .lock()
            .unwrap()
            .iter()
            .filter(|m| **m == method)
            .count()
    }

    fn attempts(&self) -> Vec<(Instant, String)> {
        self.attempts.lock().unwrap().clone()
    }

    /// Ends every open stream the way a replica that shuts down does.
    fn end_streams(&self) {
        for tx in self.subscribers.lock().unwrap().drain(..) {
            let _ = tx.send(Err(Status::unavailable("the server is shutting down")));
        }
    }

    /// Ends every session but the one with `token`, and their streams, the
    /// way a password change does.
    fn replace_session(&self, token: &str) {
        *self.token.lock().unwrap() = token.into();
        for tx in self.subscribers.lock().unwrap().drain(..) {
            let _ = tx.send(Err(Status::unauthenticated("the password was changed")));
        }
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let token = self.token.lock().unwrap().clone();
        match request.metadata().get("authorization") {
            Some(v) if v == format!("Bearer {token}").as_str() => Ok(()),
            Some(_) => Err(Status::unauthenticated("the session has expired")),
            None => Err(Status::unauthenticated("no session")),
        }
    }

    fn handle(&self, method: &'static str) {
        self.handled.lock().unwrap().push(method);
    }
}

fn account(id: &str, name: &str) -> proto::Account {
    proto::Account {
        id: id.into(),
        username: name.into(),
        ..Default::default()
    }
}

#[derive(Clone)]
struct FakeChat(Arc<Replica>);

#[tonic::async_trait]
impl Chat for FakeChat {
    async fn create_account(
        &self,
        request: Request<proto::CreateAccountRequest>,
    ) -> Result<Response<proto::AuthResponse>, Status> {
        self.0.handle("CreateAccount");
        let r = request.into_inner();
        if r.username == "taken" {
            return Err(Status::already_exists("the username taken is taken"));
        }
        Ok(Response::new(proto::AuthResponse {
            token: TOKEN.into(),
            expires_at_ms: 1,
            account: Some(account("a1", &r.username)),
            unread_count: 0,
        }))
    }

    async fn login(
        &self,
        request: Request<proto::LoginRequest>,
    ) -> Result<Response<proto::AuthResponse>, Status> {
        self.0.handle("Login");
        let r = request.into_inner();
        if r.password != "right-password" {
            return Err(Status::unauthenticated("wrong username or password"));
        }
        Ok(Response::new(proto::AuthResponse {
            token: TOKEN.into(),
            expires_at_ms: 1,
            account: Some(account("a1", &r.username)),
            unread_count: 3,
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<proto::ListAccountsRequest>,
    ) -> Result<Response<proto::ListAccountsResponse>, Status> {
        self.0.authorize(&request)?;
        self.0.handle("ListAccounts");
        Ok(Response::new(Default::default()))
    }

    async fn send_message(
        &self,
        request: Request<proto::SendMessageRequest>,
    ) -> Result<Response<proto::SendMessageResponse>, Status> {
        self.0.authorize(&request)?;
        self.0.handle("SendMessage");
        let now = self.0.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let delay = *self.0.send_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        let r = request.into_inner();
        if r.recipient_id == "nobody" {
            return Err(Status::not_found("no account nobody"));
        }
        self.0.sends.lock().unwrap().push(r.request_id.clone());
        Ok(Response::new(proto::SendMessageResponse {
            message: Some(proto::Message {
                // Derived from the request id, like the real thing.
                id: hex::encode(&r.request_id),
                body: r.body,
                ..Default::default()
            }),
        }))
    }

    async fn list_unread(
        &self,
        _: Request<proto::ListUnreadRequest>,
    ) -> Result<Response<proto::ListUnreadResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn list_conversations(
        &self,
        _: Request<proto::ListConversationsRequest>,
    ) -> Result<Response<proto::ListConversationsResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn get_history(
        &self,
        _: Request<proto::GetHistoryRequest>,
    ) -> Result<Response<proto::GetHistoryResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn mark_read(
        &self,
        _: Request<proto::MarkReadRequest>,
    ) -> Result<Response<proto::MarkReadResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn delete_messages(
        &self,
        _: Request<proto::DeleteMessagesRequest>,
    ) -> Result<Response<proto::DeleteMessagesResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn change_password(
        &self,
        request: Request<proto::ChangePasswordRequest>,
    ) -> Result<Response<proto::AuthResponse>, Status> {
        self.0.authorize(&request)?;
        self.0.handle("ChangePassword");
        let r = request.into_inner();
        if r.current_password != "right-password" {
            return Err(Status::permission_denied(
                "the current password is incorrect",
            ));
        }
        // The old session's streams end before the answer leaves.
        self.0.replace_session("new-token");
        Ok(Response::new(proto::AuthResponse {
            token: "new-token".into(),
            expires_at_ms: 2,
            account: Some(account("a1", "ann")),
            unread_count: 0,
        }))
    }

    async fn delete_account(
        &self,
        _: Request<proto::DeleteAccountRequest>,
    ) -> Result<Response<proto::DeleteAccountResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    type SubscribeStream =
        Pin<Box<dyn futures_util::Stream<Item = Result<proto::Event, Status>> + Send + 'static>>;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.0.authorize(&request)?;
        self.0.handle("Subscribe");
        let (tx, rx) = mpsc::unbounded_channel();
        let subscribed = proto::Event {
            kind: Some(event::Kind::Subscribed(proto::Subscribed {
                server_id: self.0.id,
                unread_count: 0,
            })),
        };
        tx.send(Ok(subscribed)).unwrap();
        self.0.subscribers.lock().unwrap().push(tx);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_servers(
        &self,
        _: Request<proto::ListServersRequest>,
    ) -> Result<Response<proto::ListServersResponse>, Status> {
        self.0.handle("ListServers");
        Ok(Response::new(proto::ListServersResponse {
            servers: self.0.servers.lock().unwrap().clone(),
            this_server_id: self.0.id,
        }))
    }
}

/// The transport to one fake replica, misbehaving as its mode says.
#[derive(Clone)]
struct FakeTransport {
    replica: Arc<Replica>,
    server: ChatServer<FakeChat>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, StdError>> + Send>>;

impl Service<http::Request<Body>> for FakeTransport {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), StdError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let replica = Arc::clone(&self.replica);
        let mut server = self.server.clone();
        Box::pin(async move {
            replica
                .attempts
                .lock()
                .unwrap()
                .push((Instant::now(), request.uri().path().to_string()));
            let mode = *replica.mode.lock().unwrap();
            match mode {
                Mode::Down => {
                    Err(io::Error::new(io::ErrorKind::ConnectionRefused, "refused").into())
                }
                Mode::Hang => std::future::pending().await,
                Mode::Unavailable => Ok(Status::unavailable("storage is failing").into_http()),
                Mode::ApplyThenDrop => {
                    let _ = server.call(request).await;
                    Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset").into())
                }
                Mode::Up
                    if !request.uri().path().ends_with("/ListServers")
                        && take_one(&replica.refuse_calls) =>
                {
                    Ok(Status::unavailable("this server cannot serve that now").into_http())
                }
                Mode::Up => Ok(server.call(request).await.unwrap_or_else(|e| match e {})),
            }
        })
    }
}

/// Takes one from a counter, if it has any left.
fn take_one(counter: &Mutex<u32>) -> bool {
    let mut n = counter.lock().unwrap();
    let had = *n > 0;
    *n = n.saturating_sub(1);
    had
}

struct FakeConnector(Arc<Vec<Arc<Replica>>>);

impl Connector for FakeConnector {
    type Transport = FakeTransport;

    fn connect(&self, url: &str) -> Result<FakeTransport, ConnectError> {
        let replica = self
            .0
            .iter()
            .find(|r| r.url == url)
            .ok_or_else(|| ConnectError {
                url: url.into(),
                reason: "no such fake".into(),
            })?;
        Ok(FakeTransport {
            replica: Arc::clone(replica),
            server: ChatServer::new(FakeChat(Arc::clone(replica))),
        })
    }
}

type TestClient = Client<FakeConnector, TokioTimer>;

/// `n` fake replicas and a client seeded with the first one's URL.
fn cluster(n: u32, config: Config) -> (Vec<Arc<Replica>>, TestClient) {
    let list: Vec<proto::Server> = (1..=n)
        .map(|id| proto::Server {
            id,
            url: format!("http://r{id}"),
            live: true,
        })
        .collect();
    let replicas: Vec<Arc<Replica>> = (1..=n)
        .map(|id| {
            Arc::new(Replica {
                id,
                url: format!("http://r{id}"),
                mode: Mutex::new(Mode::Up),
                servers: Mutex::new(list.clone()),
                attempts: Mutex::default(),
                sends: Mutex::default(),
                handled: Mutex::default(),
                refuse_calls: Mutex::new(0),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
                send_delay: Mutex::new(Duration::ZERO),
                subscribers: Mutex::default(),
                token: Mutex::new(TOKEN.into()),
            })
        })
        .collect();
    let connector = FakeConnector(Arc::new(replicas.clone()));
    let client = Client::new(connector, TokioTimer, vec!["http://r1/".into()], config);
    (replicas, client)
}

async fn logged_in(n: u32, config: Config) -> (Vec<Arc<Replica>>, TestClient) {
    let (replicas, client) = cluster(n, config);
    client.login("ann", "right-password").await.unwrap();
    (replicas, client)
}

fn server_id(client: &TestClient) -> u32 {
    client.current_server().expect("a replica in use").id
}

fn subscribed_on(event: &proto::Event) -> u32 {
    match &event.kind {
        Some(event::Kind::Subscribed(s)) => s.server_id,
        other => panic!("expected Subscribed, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn first_contact_adopts_the_server_list_of_the_seed() {
    let (r, client) = cluster(3, Config::default());
    assert_eq!(client.connection().get(), Connection::Connecting);
    let list = client.refresh_servers().await.unwrap();
    assert_eq!(list.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(server_id(&client), 1);
    assert!(matches!(client.connection().get(), Connection::Connected(s) if s.id == 1));
    assert!(r[1].attempts().is_empty() && r[2].attempts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_broken_connection_resends_the_same_request_id_to_the_next_replica() {
    let (r, client) = logged_in(3, Config::default()).await;
    r[0].set_mode(Mode::ApplyThenDrop);

    let message = client.send_message("bob", "hello").await.unwrap();

    // Replica 1 applied it and then went away; replica 2 got the very same
    // request id, so the message (its id derived from that) exists once.
    let first = r[0].sends();
    assert_eq!(first.len(), 1);
    assert_eq!(r[1].sends(), first);
    assert_eq!(message.id, hex::encode(&first[0]));
    assert!(r[2].sends().is_empty());
    assert_eq!(server_id(&client), 2);
    assert!(matches!(client.connection().get(), Connection::Connected(s) if s.id == 2));
}

#[tokio::test(start_paused = true)]
async fn business_errors_are_returned_not_retried() {
    let (r, client) = cluster(3, Config::default());

    let err = client
        .create_account("taken", "long-enough")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::AlreadyExists));
    assert_eq!(err.to_string(), "the username taken is taken");

    let err = client.login("ann", "wrong-password").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unauthenticated));
    assert!(client.session().is_none());

    client.login("ann", "right-password").await.unwrap();
    let err = client.send_message("nobody", "hi").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound));

    assert_eq!(r[0].handled("CreateAccount"), 1);
    assert_eq!(r[0].handled("Login"), 2);
    assert_eq!(r[0].handled("SendMessage"), 1);
    for other in &r[1..] {
        assert!(
            other.attempts().is_empty(),
            "replica {} was tried",
            other.id
        );
    }
    assert_eq!(server_id(&client), 1);
}

#[tokio::test(start_paused = true)]
async fn a_missed_deadline_moves_on_after_the_call_timeout() {
    let (r, client) = logged_in(3, Config::default()).await;
    r[0].set_mode(Mode::Hang);
    let started = Instant::now();

    client.send_message("bob", "hello").await.unwrap();

    let took = started.elapsed();
    let timeout = client.config().call_timeout;
    assert!(took >= timeout, "{took:?}");
    assert!(took < timeout + Duration::from_millis(100), "{took:?}");
    assert_eq!(r[1].sends().len(), 1);
    assert_eq!(server_id(&client), 2);
}

#[tokio::test(start_paused = true)]
async fn unavailable_moves_on() {
    let (r, client) = logged_in(3, Config::default()).await;
    r[0].set_mode(Mode::Unavailable);
    client.send_message("bob", "hello").await.unwrap();
    assert_eq!(r[1].sends().len(), 1);
    assert_eq!(server_id(&client), 2);
}

#[tokio::test(start_paused = true)]
async fn failover_prefers_live_replicas_and_refreshes_the_list() {
    let (r, client) = cluster(4, Config::default());
    // Replica 1 believes 2 is down and does not know 4 yet; 3 knows all.
    *r[0].servers.lock().unwrap() = vec![
        proto::Server {
            id: 1,
            url: "http://r1".into(),
            live: true,
        },
        proto::Server {
            id: 2,
            url: "http://r2".into(),
            live: false,
        },
        proto::Server {
            id: 3,
            url: "http://r3".into(),
            live: true,
        },
    ];
    client.login("ann", "right-password").await.unwrap();
    assert_eq!(client.servers().get().len(), 3);

    r[0].set_mode(Mode::Down);
    client.send_message("bob", "hello").await.unwrap();

    assert!(
        r[1].attempts().is_empty(),
        "went to a replica listed as down"
    );
    assert_eq!(server_id(&client), 3);
    let ids: Vec<u32> = client.servers().get().iter().map(|s| s.id).collect();
    assert_eq!(ids, [1, 2, 3, 4], "list not refreshed from the new replica");
}

#[tokio::test(start_paused = true)]
async fn backs_off_while_every_replica_is_down_then_completes_the_call() {
    let (r, client) = logged_in(3, Config::default()).await;
    for replica in &r {
        replica.set_mode(Mode::Down);
    }
    let sender = client.clone();
    let call = tokio::spawn(async move { sender.send_message("bob", "hello").await });

    // Let a few rounds fail: 250 ms, 500 ms, 1 s, 2 s apart.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(matches!(
        client.connection().get(),
        Connection::Offline { round: 4, retry_in } if retry_in == Duration::from_secs(2)
    ));
    let probes: Vec<Instant> = r[1]
        .attempts()
        .into_iter()
        .filter(|(_, path)| path.ends_with("/ListServers"))
        .map(|(at, _)| at)
        .collect();
    let gaps: Vec<u128> = probes
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    assert_eq!(gaps, [250, 500, 1000]);

    r[1].set_mode(Mode::Up);
    let message = call.await.unwrap().unwrap();
    assert_eq!(r[1].sends(), [hex::decode(&message.id).unwrap()]);
    assert_eq!(server_id(&client), 2);
}

#[tokio::test(start_paused = true)]
async fn backs_off_while_every_replica_answers_but_cannot_serve_the_call() {
    // Each of the three answers `ListServers` but refuses two calls: going
    // round them as fast as they answer would spin; instead each full
    // round of refusals is followed by the usual backoff.
    let (r, client) = logged_in(3, Config::default()).await;
    for replica in &r {
        *replica.refuse_calls.lock().unwrap() = 2;
    }
    let started = Instant::now();
    client.send_message("bob", "hello").await.unwrap();
    // Six refusals, two rounds: 250 ms, then 500 ms.
    assert_eq!(started.elapsed(), Duration::from_millis(750));
    let sends: usize = r.iter().map(|x| x.sends().len()).sum();
    assert_eq!(sends, 1);
    // A call that is served resets the count: the next refusal moves on
    // at once.
    *r[0].refuse_calls.lock().unwrap() = 1;
    *r[1].refuse_calls.lock().unwrap() = 1;
    *r[2].refuse_calls.lock().unwrap() = 1;
    let started = Instant::now();
    client.send_message("bob", "again").await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_the_configured_rounds() {
    let config = Config {
        offline_rounds: Some(2),
        ..Config::default()
    };
    let (r, client) = logged_in(2, config).await;
    r[0].set_mode(Mode::Down);
    r[1].set_mode(Mode::Down);
    let err = client.send_message("bob", "hello").await.unwrap_err();
    assert!(matches!(err, CallError::Offline), "{err:?}");
    assert!(matches!(
        client.connection().get(),
        Connection::Offline { round: 2, .. }
    ));
    // Everything comes back: the next call just works.
    r[0].set_mode(Mode::Up);
    client.send_message("bob", "again").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_request_at_a_time() {
    let (r, client) = logged_in(1, Config::default()).await;
    *r[0].send_delay.lock().unwrap() = Duration::from_millis(100);
    let started = Instant::now();
    let results = futures_util::future::join_all((0..3).map(|i| {
        let client = client.clone();
        async move { client.send_message("bob", &format!("m{i}")).await }
    }))
    .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(r[0].max_in_flight.load(Ordering::SeqCst), 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn input_is_checked_before_anything_is_sent() {
    let (r, client) = cluster(1, Config::default());
    let err = client.send_message("bob", "hi").await.unwrap_err();
    assert!(matches!(err, CallError::NotLoggedIn), "{err:?}");
    client.login("ann", "right-password").await.unwrap();
    let before = r[0].attempts().len();
    let err = client.send_message("bob", "   ").await.unwrap_err();
    assert!(matches!(err, CallError::Invalid(_)), "{err:?}");
    let err = client.create_account("x", "long-enough").await.unwrap_err();
    assert!(matches!(err, CallError::Invalid(_)), "{err:?}");
    assert_eq!(r[0].attempts().len(), before);
}

#[tokio::test(start_paused = true)]
async fn the_subscription_reopens_on_the_next_replica() {
    let (r, client) = logged_in(3, Config::default()).await;
    let mut events = client.subscribe();
    assert_eq!(subscribed_on(&events.next().await.unwrap()), 1);

    // Replica 1 goes away: its stream ends, new connections are refused.
    r[0].set_mode(Mode::Down);
    r[0].end_streams();

    // The subscription noticed first and moved the whole client.
    assert_eq!(subscribed_on(&events.next().await.unwrap()), 2);
    assert_eq!(server_id(&client), 2);
    // Events on the new stream arrive.
    let message = proto::Event {
        kind: Some(event::Kind::Message(proto::Message {
            id: "m1".into(),
            ..Default::default()
        })),
    };
    r[1].subscribers.lock().unwrap()[0]
        .send(Ok(message.clone()))
        .unwrap();
    assert_eq!(events.next().await.unwrap(), message);
}

#[tokio::test(start_paused = true)]
async fn the_subscription_follows_a_failover_by_a_call_and_a_switch_by_hand() {
    let (r, client) = logged_in(3, Config::default()).await;
    let mut events = client.subscribe();
    assert_eq!(subscribed_on(&events.next().await.unwrap()), 1);

    // A call finds replica 1 unavailable (its stream still looks fine).
    r[0].set_mode(Mode::Unavailable);
    client.send_message("bob", "hello").await.unwrap();
    assert_eq!(subscribed_on(&events.next().await.unwrap()), 2);

    client.switch_to("http://r3").await.unwrap();
    assert_eq!(subscribed_on(&events.next().await.unwrap()), 3);

    r[0].set_mode(Mode::Down);
    let err = client.switch_to("http://r1").await.unwrap_err();
    assert!(matches!(err, CallError::Unreachable(_)), "{err:?}");
    assert_eq!(server_id(&client), 3);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_session_ends_the_subscription_without_failover() {
    let (r, client) = logged_in(3, Config::default()).await;
    let mut session = client.session().unwrap();
    session.token = "stale".into();
    client.set_session(Some(session));
    let err = client.subscribe().next().await.unwrap_err();
    assert!(err.is_session_ended(), "{err:?}");
    assert!(r[1].attempts().is_empty() && r[2].attempts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_password_change_replaces_the_session_and_keeps_the_subscription() {
    let (r, client) = logged_in(1, Config::default()).await;
    let mut events = client.subscribe();
    assert_eq!(subscribed_on(&events.next().await.unwrap()), 1);

    let err = client
        .change_password("right-password", "short")
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Invalid(_)), "{err:?}");
    let err = client
        .change_password("wrong-password", "a new password")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied));
    assert_eq!(client.session().unwrap().token, TOKEN);

    // The replica ends the old session's stream before it answers; the
    // subscription waits for the answer and re-opens with the new session.
    let next = tokio::spawn(async move { (events.next().await, events) });
    tokio::time::sleep(Duration::from_millis(1)).await;
    client
        .change_password("right-password", "a new password")
        .await
        .unwrap();
    assert_eq!(client.session().unwrap().token, "new-token");
    let (event, mut events) = next.await.unwrap();
    assert_eq!(subscribed_on(&event.unwrap()), 1);
    assert_eq!(r[0].handled("Subscribe"), 2);

    // A change made elsewhere ends this session, and the subscription.
    r[0].replace_session("another-token");
    let err = events.next().await.unwrap_err();
    assert!(err.is_session_ended(), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn one_failure_noticed_twice_moves_the_client_once() {
    let (r, client) = logged_in(3, Config::default()).await;
    let mut events = client.subscribe();
    assert_eq!(subscribed_on(&events.next().await.unwrap()), 1);

    // A send hangs on replica 1; then replica 1 dies, and the subscription
    // notices first and moves the client to replica 2.
    r[0].set_mode(Mode::Hang);
    let sender = client.clone();
    let call = tokio::spawn(async move { sender.send_message("bob", "hello").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    r[0].set_mode(Mode::Down);
    r[0].end_streams();
    assert_eq!(subscribed_on(&events.next().await.unwrap()), 2);

    // The send's deadline then reports the same failure: it is re-sent to
    // replica 2, not taken as a reason to leave replica 2 as well.
    call.await.unwrap().unwrap();
    assert_eq!(r[1].sends().len(), 1);
    assert!(r[2].attempts().is_empty(), "moved twice for one failure");
    assert_eq!(server_id(&client), 2);
}
