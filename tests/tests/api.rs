//! The client API of a single replica, end to end: a real `chat-server`
//! process, a real fjall directory, a native tonic client.

use std::collections::HashSet;
use std::time::Duration;

use chat_tests::chat_shared::limits::{HISTORY_PAGE_MAX, SUBSCRIPTIONS_PER_ACCOUNT};
use chat_tests::chat_shared::proto::{self, event};
use chat_tests::*;
use tokio_stream::StreamExt;
use tonic::Code;

async fn single(name: &str) -> (TestDir, Replica) {
    let dir = TestDir::new(name);
    let mut r = Replica::new(dir.path(), 1, vec![]);
    r.start().await;
    (dir, r)
}

fn send_req(to: &str, body: &str) -> proto::SendMessageRequest {
    proto::SendMessageRequest {
        request_id: rid(),
        recipient_id: to.into(),
        body: body.into(),
    }
}

#[tokio::test]
async fn account_and_message_lifecycle() {
    let (_dir, r) = single("lifecycle").await;
    let mut c = r.client().await;
    let ann = register(&mut c, "Ann", "ann-password").await;
    let bob = register(&mut c, "bob", "bob-password").await;
    let (ann_id, bob_id) = (
        ann.account.clone().unwrap().id,
        bob.account.clone().unwrap().id,
    );
    assert_eq!(ann.unread_count, 0);
    assert_eq!(ann.account.as_ref().unwrap().username, "Ann");

    // Usernames are unique without regard to case.
    let taken = c
        .create_account(proto::CreateAccountRequest {
            request_id: rid(),
            username: "ANN".into(),
            password: "whatever-pw".into(),
        })
        .await;
    assert!(expect_code(taken, Code::AlreadyExists).contains("already taken"));

    // Ann writes to Bob twice; Bob logs in and sees two unread.
    let m1 = c
        .send_message(authed(&ann.token, send_req(&bob_id, "hello bob")))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(m1.sender.as_ref().unwrap().username, "Ann");
    assert_eq!(m1.recipient.as_ref().unwrap().id, bob_id);
    assert!(!m1.read);
    c.send_message(authed(&ann.token, send_req(&bob_id, "second")))
        .await
        .unwrap();
    let wrong = c
        .login(proto::LoginRequest {
            username: "bob".into(),
            password: "not-bobs-password".into(),
        })
        .await;
    assert_eq!(
        expect_code(wrong, Code::Unauthenticated),
        "wrong username or password"
    );
    let nobody = c
        .login(proto::LoginRequest {
            username: "nobody".into(),
            password: "not-bobs-password".into(),
        })
        .await;
    assert_eq!(
        expect_code(nobody, Code::Unauthenticated),
        "wrong username or password"
    );
    let bob = c
        .login(proto::LoginRequest {
            username: "BOB".into(),
            password: "bob-password".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bob.unread_count, 2);

    let unread = c
        .list_unread(authed(&bob.token, proto::ListUnreadRequest { limit: 1 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unread.unread_count, 2);
    assert_eq!(unread.messages.len(), 1);
    assert_eq!(unread.messages[0].body, "hello bob", "oldest first");

    // Bob reads the first; both see it read.
    let after = c
        .mark_read(authed(
            &bob.token,
            proto::MarkReadRequest {
                request_id: rid(),
                message_ids: vec![m1.id.clone()],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.unread_count, 1);
    let hist = c
        .get_history(authed(
            &ann.token,
            proto::GetHistoryRequest {
                peer_id: bob_id.clone(),
                page_size: 10,
                cursor: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        hist.messages
            .iter()
            .map(|m| (m.body.as_str(), m.read))
            .collect::<Vec<_>>(),
        vec![("second", false), ("hello bob", true)]
    );
    assert!(hist.next_cursor.is_empty());

    // Conversations: Bob has one, with one unread and the newest message.
    let convs = c
        .list_conversations(authed(
            &bob.token,
            proto::ListConversationsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(convs.conversations.len(), 1);
    let conv = &convs.conversations[0];
    assert_eq!(conv.peer.as_ref().unwrap().id, ann_id);
    assert_eq!((conv.unread_count, conv.message_count), (1, 2));
    assert_eq!(conv.last_message.as_ref().unwrap().body, "second");

    // Bob deletes the second message: gone for both.
    let second = hist.messages[0].id.clone();
    let del = c
        .delete_messages(authed(
            &bob.token,
            proto::DeleteMessagesRequest {
                request_id: rid(),
                message_ids: vec![second.clone()],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.unread_count, 0);
    for token in [&ann.token, &bob.token] {
        let peer = if token == &ann.token {
            &bob_id
        } else {
            &ann_id
        };
        let h = c
            .get_history(authed(
                token,
                proto::GetHistoryRequest {
                    peer_id: peer.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(h.messages.len(), 1);
        assert_eq!(h.messages[0].id, m1.id);
    }
    // Deleting again is a no-op, not an error (retries are safe).
    c.delete_messages(authed(
        &ann.token,
        proto::DeleteMessagesRequest {
            request_id: rid(),
            message_ids: vec![second],
        },
    ))
    .await
    .unwrap();

    // Bob deletes his account (password required).
    let wrong = c
        .delete_account(authed(
            &bob.token,
            proto::DeleteAccountRequest {
                request_id: rid(),
                password: "nope-nope-nope".into(),
            },
        ))
        .await;
    expect_code(wrong, Code::PermissionDenied);
    // The deletion, then a retry of it (its answer lost, say): both succeed.
    for _ in 0..2 {
        c.delete_account(authed(
            &bob.token,
            proto::DeleteAccountRequest {
                request_id: rid(),
                password: "bob-password".into(),
            },
        ))
        .await
        .unwrap();
    }
    // His sessions stop working, his name is retired, mail to him is refused,
    // and Ann keeps her side of the conversation.
    let r = c
        .list_unread(authed(&bob.token, proto::ListUnreadRequest::default()))
        .await;
    assert!(expect_code(r, Code::Unauthenticated).contains("deleted"));
    let r = c
        .login(proto::LoginRequest {
            username: "bob".into(),
            password: "bob-password".into(),
        })
        .await;
    assert!(expect_code(r, Code::Unauthenticated).contains("deleted"));
    let again = c
        .create_account(proto::CreateAccountRequest {
            request_id: rid(),
            username: "bob".into(),
            password: "new-bob-password".into(),
        })
        .await;
    expect_code(again, Code::AlreadyExists);
    let r = c
        .send_message(authed(&ann.token, send_req(&bob_id, "are you there?")))
        .await;
    assert!(expect_code(r, Code::FailedPrecondition).contains("deleted"));
    let h = c
        .get_history(authed(
            &ann.token,
            proto::GetHistoryRequest {
                peer_id: bob_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.messages.len(), 1);
    assert!(h.messages[0].recipient.as_ref().unwrap().deleted);
    let listed = c
        .list_accounts(authed(&ann.token, proto::ListAccountsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed
        .accounts
        .iter()
        .map(|a| a.username.as_str())
        .collect();
    assert_eq!(names, ["Ann"]);
}

#[tokio::test]
async fn retried_requests_apply_once() {
    let (_dir, r) = single("retry").await;
    let mut c = r.client().await;
    let create = proto::CreateAccountRequest {
        request_id: rid(),
        username: "carol".into(),
        password: "carol-password".into(),
    };
    let first = c.create_account(create.clone()).await.unwrap().into_inner();
    let again = c.create_account(create.clone()).await.unwrap().into_inner();
    assert_eq!(
        first.account, again.account,
        "a retried creation is the same account"
    );
    // The same request id with another password does not get a session.
    let mut stolen = create.clone();
    stolen.password = "someone-else".into();
    expect_code(c.create_account(stolen).await, Code::AlreadyExists);

    let dave = register(&mut c, "dave", "dave-password").await;
    let dave_id = dave.account.unwrap().id;
    let send = send_req(&dave_id, "exactly once");
    let a = c
        .send_message(authed(&first.token, send.clone()))
        .await
        .unwrap()
        .into_inner();
    let b = c
        .send_message(authed(&first.token, send.clone()))
        .await
        .unwrap()
        .into_inner();
    // The first answer is built from what the writer stored, the retry's
    // from a read of the store: the same message either way.
    assert_eq!(
        a.message, b.message,
        "a retried send answers the same message"
    );
    assert_eq!(a.message.as_ref().unwrap().body, "exactly once");
    assert_eq!(
        a.message
            .as_ref()
            .unwrap()
            .recipient
            .as_ref()
            .unwrap()
            .username,
        "dave"
    );
    let mut other = send.clone();
    other.body = "different body, same request id".into();
    expect_code(
        c.send_message(authed(&first.token, other)).await,
        Code::InvalidArgument,
    );
    let h = c
        .get_history(authed(
            &first.token,
            proto::GetHistoryRequest {
                peer_id: dave_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.messages.len(), 1);

    // Dave deletes his account: a retry of the send that went through is
    // still answered with the message (it is there), a new one refused.
    c.delete_account(authed(
        &dave.token,
        proto::DeleteAccountRequest {
            request_id: rid(),
            password: "dave-password".into(),
        },
    ))
    .await
    .unwrap();
    let late = c
        .send_message(authed(&first.token, send.clone()))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(late.id, a.message.as_ref().unwrap().id);
    assert!(late.recipient.unwrap().deleted);
    expect_code(
        c.send_message(authed(&first.token, send_req(&dave_id, "too late")))
            .await,
        Code::FailedPrecondition,
    );
}

#[tokio::test]
async fn paging_never_skips_or_repeats() {
    let (_dir, r) = single("paging").await;
    let mut c = r.client().await;
    // Accounts created in one burst share creation times; usernames order
    // the directory, so pages are exact.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            register(&mut c, &format!("user-{i:03}"), "some-password").await
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    let me = tokens[0].token.clone();
    for (pattern, want) in [
        ("user-*", 60),
        ("USER-0?5", 6),
        ("*-05*", 10),
        ("x*", 0),
        ("", 60),
    ] {
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = c
                .list_accounts(authed(
                    &me,
                    proto::ListAccountsRequest {
                        pattern: pattern.into(),
                        page_size: 7,
                        cursor: cursor.clone(),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            assert!(page.accounts.len() <= 7);
            seen.extend(page.accounts.into_iter().map(|a| a.username));
            if page.next_cursor.is_empty() {
                break;
            }
            cursor = page.next_cursor;
        }
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{pattern}: repeats");
        assert_eq!(seen.len(), want, "{pattern}: {seen:?}");
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "{pattern}: username order");
    }

    // 250 messages between two accounts, paged newest first at several
    // page sizes, including the maximum.
    let (a, b) = (&tokens[1], &tokens[2]);
    let b_id = b.account.as_ref().unwrap().id.clone();
    let a_id = a.account.as_ref().unwrap().id.clone();
    let mut sent = Vec::new();
    for i in 0..250 {
        let (from, to) = if i % 3 == 0 {
            (&b.token, &a_id)
        } else {
            (&a.token, &b_id)
        };
        let m = c
            .send_message(authed(from, send_req(to, &format!("m{i}"))))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap();
        sent.push((m.order, m.id));
    }
    // `order` says the server's order, also of sends within one millisecond
    // (which these are, often): a client sorting by it agrees.
    assert!(
        sent.windows(2).all(|w| w[0].0 < w[1].0),
        "order increases with every send: {:?}",
        sent.iter().map(|(o, _)| o).collect::<Vec<_>>()
    );
    let ms = chat_server::hlc::to_millis;
    let same_ms = sent.windows(2).filter(|w| ms(w[0].0) == ms(w[1].0)).count();
    eprintln!("{same_ms} of 249 consecutive sends shared a millisecond");
    let mut sent: Vec<String> = sent.into_iter().map(|(_, id)| id).collect();
    sent.reverse();
    for size in [1, 7, 50, HISTORY_PAGE_MAX] {
        let mut got = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = c
                .get_history(authed(
                    &a.token,
                    proto::GetHistoryRequest {
                        peer_id: b_id.clone(),
                        page_size: size,
                        cursor: cursor.clone(),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            got.extend(page.messages.into_iter().map(|m| m.id));
            if page.next_cursor.is_empty() {
                break;
            }
            cursor = page.next_cursor;
        }
        assert_eq!(got, sent, "page size {size}");
    }
}

#[tokio::test]
async fn a_session_this_replica_cannot_place_yet_sends_the_client_elsewhere() {
    // A genuine token of an account this replica has not received (made
    // on a replica that was cut off from it; here: another replica with
    // the same cluster secret that it never met). The session is fine, so
    // the answer is "try another server" (UNAVAILABLE, which clients fail
    // over on), not "log in again" (UNAUTHENTICATED).
    let (_da, a) = single("not-here-yet-a").await;
    let (_db, b) = single("not-here-yet-b").await;
    let ann = register(&mut a.client().await, "ann", "ann-password").await;
    let r = b
        .client()
        .await
        .list_conversations(authed(
            &ann.token,
            proto::ListConversationsRequest {
                page_size: 10,
                cursor: String::new(),
            },
        ))
        .await;
    let m = expect_code(r, Code::Unavailable);
    assert!(m.contains("has not received your account yet"), "{m}");
}

#[tokio::test]
async fn a_live_stream_ends_when_its_session_expires() {
    // Sessions of one second: the stream opened with one must not outlive
    // it (a call with the token is refused by then, so must the stream be).
    let dir = TestDir::new("stream-expiry");
    let mut r = Replica::new(dir.path(), 1, vec![]);
    r.extra_args
        .extend(["--session-ttl-secs", "1"].map(String::from));
    r.start().await;
    let mut c = r.client().await;
    let ann = register(&mut c, "ann", "ann-password").await;
    let opened = std::time::Instant::now();
    let mut events = c
        .subscribe(authed(&ann.token, proto::SubscribeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        next_event(&mut events).await,
        event::Kind::Subscribed(_)
    ));
    // Expiry (1 s) plus the replicas' clock leeway (5 s), and a margin.
    let end = tokio::time::timeout(Duration::from_secs(15), events.next())
        .await
        .expect("the stream outlived its session by far");
    let status = match end {
        Some(Err(status)) => status,
        other => panic!("expected the stream to end with an error, got {other:?}"),
    };
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "session expired: log in again");
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "ended before the expiry"
    );
    // And a call with the token is refused the same way.
    let refused = c
        .list_conversations(authed(
            &ann.token,
            proto::ListConversationsRequest {
                page_size: 10,
                cursor: String::new(),
            },
        ))
        .await;
    assert_eq!(
        expect_code(refused, Code::Unauthenticated),
        "session expired: log in again"
    );
}

#[tokio::test]
async fn live_delivery_through_subscription() {
    let (_dir, r) = single("live").await;
    let mut c = r.client().await;
    let ann = register(&mut c, "ann", "ann-password").await;
    let bob = register(&mut c, "bob", "bob-password").await;
    let bob_id = bob.account.as_ref().unwrap().id.clone();
    let mut events = c
        .subscribe(authed(&bob.token, proto::SubscribeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(next_event(&mut events).await, event::Kind::Subscribed(s) if s.unread_count == 0)
    );
    let sent = c
        .send_message(authed(&ann.token, send_req(&bob_id, "live!")))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    match next_event(&mut events).await {
        event::Kind::Message(m) => assert_eq!((m.id, m.body), (sent.id.clone(), "live!".into())),
        other => panic!("expected the message, got {other:?}"),
    }
    c.mark_read(authed(
        &bob.token,
        proto::MarkReadRequest {
            request_id: rid(),
            message_ids: vec![sent.id.clone()],
        },
    ))
    .await
    .unwrap();
    assert!(
        matches!(next_event(&mut events).await, event::Kind::Read(r) if r.message_ids == [sent.id.clone()])
    );
    c.delete_messages(authed(
        &ann.token,
        proto::DeleteMessagesRequest {
            request_id: rid(),
            message_ids: vec![sent.id.clone()],
        },
    ))
    .await
    .unwrap();
    assert!(
        matches!(next_event(&mut events).await, event::Kind::Deleted(d) if d.message_ids == [sent.id.clone()])
    );
    // Deleting the account ends the stream with UNAUTHENTICATED.
    c.delete_account(authed(
        &bob.token,
        proto::DeleteAccountRequest {
            request_id: rid(),
            password: "bob-password".into(),
        },
    ))
    .await
    .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("stream ends");
    assert!(matches!(end, Some(Err(s)) if s.code() == Code::Unauthenticated));
}

/// One account may hold `SUBSCRIPTIONS_PER_ACCOUNT` live streams on a
/// replica: one more is refused with RESOURCE_EXHAUSTED and a reason,
/// another account is not affected, and closing a stream frees its place.
#[tokio::test]
async fn live_streams_per_account_are_bounded() {
    let (_dir, r) = single("streams").await;
    let mut c = r.client().await;
    let ann = register(&mut c, "ann", "ann-password").await;
    let bob = register(&mut c, "bob", "bob-password").await;
    let ann_id = ann.account.as_ref().unwrap().id.clone();
    let subscribe = |token: &str| authed(token, proto::SubscribeRequest {});
    let mut open = Vec::new();
    for _ in 0..SUBSCRIPTIONS_PER_ACCOUNT {
        let mut s = c
            .subscribe(subscribe(&ann.token))
            .await
            .unwrap()
            .into_inner();
        assert!(matches!(
            next_event(&mut s).await,
            event::Kind::Subscribed(_)
        ));
        open.push(s);
    }
    let refused = c.subscribe(subscribe(&ann.token)).await.map(|_| ());
    let why = expect_code(refused, Code::ResourceExhausted);
    assert!(
        why.contains(&format!(
            "already has {SUBSCRIPTIONS_PER_ACCOUNT} live event streams"
        )),
        "{why}"
    );
    let mut bobs = c
        .subscribe(subscribe(&bob.token))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        next_event(&mut bobs).await,
        event::Kind::Subscribed(_)
    ));

    // A closed stream's place comes back once the replica sees it gone.
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        match c.subscribe(subscribe(&ann.token)).await {
            Ok(s) => break s.into_inner(),
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the place never came back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    };
    assert!(matches!(
        next_event(&mut again).await,
        event::Kind::Subscribed(_)
    ));
    // Every open stream still delivers.
    let sent = c
        .send_message(authed(&bob.token, send_req(&ann_id, "to every tab")))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    open.push(again);
    for s in &mut open {
        assert!(matches!(next_event(s).await, event::Kind::Message(m) if m.id == sent.id));
    }
}

#[tokio::test]
async fn health_and_reflection() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };
    let (_dir, r) = single("health").await;
    let channel = tonic::transport::Channel::from_shared(r.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for service in ["", "chat.v1.Chat"] {
        let status = HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"chat.v1.Chat".to_string()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn server_list_names_this_replica() {
    let (_dir, r) = single("servers").await;
    let list = r.list_servers().await;
    assert_eq!(list.this_server_id, 1);
    assert_eq!(list.servers.len(), 1);
    assert_eq!(list.servers[0].url, r.url());
    assert!(list.servers[0].live);
}

#[tokio::test]
async fn sigterm_stops_cleanly_even_with_open_subscriptions() {
    let (_dir, mut r) = single("sigterm").await;
    let mut c = r.client().await;
    let ann = register(&mut c, "ann", "ann-password").await;
    let mut events = c
        .subscribe(authed(&ann.token, proto::SubscribeRequest {}))
        .await
        .unwrap()
        .into_inner();
    events.next().await.unwrap().unwrap();
    let status = r.terminate().await;
    assert!(status.success(), "exit status {status}");
    r.start().await;
    let mut c = r.client().await;
    c.login(proto::LoginRequest {
        username: "ann".into(),
        password: "ann-password".into(),
    })
    .await
    .expect("account survives a restart");
}

#[tokio::test]
async fn serves_the_web_app_beside_the_api() {
    let dir = TestDir::new("static");
    let app = dir.path().join("dist");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("index.html"), "<html>chat app</html>").unwrap();
    std::fs::write(app.join("app.js"), "console.log(1)").unwrap();
    let mut r = Replica::new(dir.path(), 1, vec![]);
    r.extra_args = vec!["--static-dir".into(), app.display().to_string()];
    r.start().await;
    let (status, body) = http_get(r.client_addr, "/").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "<html>chat app</html>");
    let (status, body) = http_get(r.client_addr, "/app.js").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "console.log(1)");
    // Client-side routes get the app too.
    let (_, body) = http_get(r.client_addr, "/conversations/abc").await;
    assert_eq!(body, "<html>chat app</html>");
    // And gRPC on the same port still works.
    let mut c = r.client().await;
    register(&mut c, "ann", "ann-password").await;
}

/// One gRPC-web call over HTTP/1.1, as a browser makes it: `message` in
/// one frame to `Chat/method`. The whole answer, lowercased.
async fn grpc_web_call(r: &Replica, method: &str, message: &impl prost::Message) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&body);
    let mut s = tokio::net::TcpStream::connect(r.client_addr).await.unwrap();
    let head = format!(
        "POST /chat.v1.Chat/{method} HTTP/1.1\r\nHost: x\r\nOrigin: http://example.test\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        frame.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&frame).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

#[tokio::test]
async fn grpc_web_and_cors_for_browsers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, r) = single("grpc-web").await;
    // CORS preflight from any origin.
    let mut s = tokio::net::TcpStream::connect(r.client_addr).await.unwrap();
    let pre = "OPTIONS /chat.v1.Chat/ListServers HTTP/1.1\r\nHost: x\r\nOrigin: http://example.test\r\n\
               Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web,authorization\r\n\
               Connection: close\r\n\r\n";
    s.write_all(pre.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let lower = out.to_ascii_lowercase();
    assert!(lower.contains("access-control-allow-origin: *"), "{out}");
    // A gRPC-web call over HTTP/1.1: an empty ListServersRequest frame.
    let text = grpc_web_call(&r, "ListServers", &proto::ListServersRequest::default()).await;
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("content-type: application/grpc-web"),
        "{text}"
    );
    assert!(text.contains("access-control-expose-headers"), "{text}");
    assert!(
        text.contains("grpc-status:0"),
        "trailers in the body: {text}"
    );
    assert!(
        text.contains(&r.url()),
        "the server list names this replica: {text}"
    );
}

fn login(username: &str, password: &str) -> proto::LoginRequest {
    proto::LoginRequest {
        username: username.into(),
        password: password.into(),
    }
}

/// Guessing a password gets a few tries, then RESOURCE_EXHAUSTED with the
/// wait -- per account name (existing or not), per address, and for
/// DeleteAccount's and ChangePassword's confirmations too; the right
/// password is refused while throttled, and forgives the account's earlier
/// failures.
#[tokio::test]
async fn password_guessing_is_throttled() {
    let dir = TestDir::new("throttle");
    let mut r = Replica::new(dir.path(), 1, vec![]);
    r.extra_args.extend(
        [
            "--password-tries-per-account",
            "3",
            "--password-tries-per-address",
            "9",
        ]
        .map(String::from),
    );
    r.start().await;
    let mut c = r.client().await;
    let ann = register(&mut c, "ann", "ann-password").await;
    register(&mut c, "bob", "bob-password").await;

    // Ann's owner mistypes twice, then gets it right: forgiven.
    for _ in 0..2 {
        expect_code(
            c.login(login("ANN", "typo-typo")).await,
            Code::Unauthenticated,
        );
    }
    c.login(login("ann", "ann-password")).await.unwrap();
    // A guesser gets three tries (address: 2 + 3 used of 9) ...
    for _ in 0..3 {
        expect_code(
            c.login(login("ann", "guess-guess")).await,
            Code::Unauthenticated,
        );
    }
    // ... then even the right password is refused, with the wait.
    let refused = expect_code(
        c.login(login("Ann", "ann-password")).await,
        Code::ResourceExhausted,
    );
    assert!(
        refused.starts_with("too many wrong passwords for this account; try again in "),
        "{refused}"
    );
    // A stolen session does not open another way to guess: DeleteAccount's
    // confirmation counts against the same name (the address has tries
    // left), and is refused before the password is checked.
    let refused = expect_code(
        c.delete_account(authed(
            &ann.token,
            proto::DeleteAccountRequest {
                request_id: rid(),
                password: "ann-password".into(),
            },
        ))
        .await,
        Code::ResourceExhausted,
    );
    assert!(refused.contains("for this account"), "{refused}");
    // Nor does ChangePassword's.
    let refused = expect_code(
        c.change_password(authed(
            &ann.token,
            proto::ChangePasswordRequest {
                request_id: rid(),
                current_password: "ann-password".into(),
                new_password: "stolen-password".into(),
            },
        ))
        .await,
        Code::ResourceExhausted,
    );
    assert!(refused.contains("for this account"), "{refused}");
    // A name nobody has is throttled alike: nothing tells them apart
    // (address: 8 of 9 used after these three).
    for _ in 0..3 {
        expect_code(
            c.login(login("nobody", "guess-guess")).await,
            Code::Unauthenticated,
        );
    }
    let refused = expect_code(
        c.login(login("nobody", "guess-guess")).await,
        Code::ResourceExhausted,
    );
    assert!(refused.contains("for this account"), "{refused}");
    // One more guess at another name uses the address up: Bob is refused
    // from here, though his name was never guessed at.
    expect_code(
        c.login(login("carl", "guess-guess")).await,
        Code::Unauthenticated,
    );
    let refused = expect_code(
        c.login(login("bob", "bob-password")).await,
        Code::ResourceExhausted,
    );
    assert!(
        refused.starts_with("too many wrong passwords from your address; try again in "),
        "{refused}"
    );

    // The account is untouched, and its session still works.
    let me = c
        .list_conversations(authed(
            &ann.token,
            proto::ListConversationsRequest::default(),
        ))
        .await;
    assert!(me.is_ok(), "{me:?}");
    r.terminate().await;
}

/// New accounts per address: a few, then RESOURCE_EXHAUSTED with the wait,
/// for browsers (gRPC-web) too. Bad input costs none; a retry of a creation
/// that went through (the client core retries with the same request id)
/// costs none and still gets its session; existing accounts are untouched.
#[tokio::test]
async fn new_accounts_per_address_are_limited() {
    let dir = TestDir::new("signups");
    let mut r = Replica::new(dir.path(), 1, vec![]);
    r.extra_args
        .extend(["--signups-per-address", "3"].map(String::from));
    r.start().await;
    let mut c = r.client().await;
    let create = |name: &str, request_id: Vec<u8>, password: &str| proto::CreateAccountRequest {
        request_id,
        username: name.into(),
        password: password.into(),
    };
    let ann = register(&mut c, "ann", "ann-password").await;
    // Refused for bad input: nothing hashed, nothing counted.
    for bad in ["x", "no spaces allowed"] {
        expect_code(
            c.create_account(create(bad, rid(), "a-password")).await,
            Code::InvalidArgument,
        );
    }
    let bob_request = rid();
    let bob = c
        .create_account(create("bob", bob_request.clone(), "bob-password"))
        .await
        .unwrap()
        .into_inner();
    // A name already taken costs one: the hash was paid for.
    expect_code(
        c.create_account(create("ANN", rid(), "other-password"))
            .await,
        Code::AlreadyExists,
    );
    let refused = expect_code(
        c.create_account(create("carl", rid(), "carl-password"))
            .await,
        Code::ResourceExhausted,
    );
    // 3 an hour: the next one in 20 minutes.
    assert!(
        refused == "too many new accounts from your address; try again in 20 min",
        "{refused}"
    );
    // Bob's client never heard back and retries: same account, a session.
    let again = c
        .create_account(create("bob", bob_request.clone(), "bob-password"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.account, bob.account);
    assert!(!again.token.is_empty());
    // The same request with another password gets nothing.
    expect_code(
        c.create_account(create("bob", bob_request, "not-bobs-password"))
            .await,
        Code::AlreadyExists,
    );
    // A browser is refused alike (gRPC-web over HTTP/1.1).
    let text = grpc_web_call(&r, "CreateAccount", &create("dora", rid(), "dora-password")).await;
    assert!(text.starts_with("http/1.1 200"), "{text}");
    // A trailers-only answer: the status is in the headers.
    assert!(text.contains("\r\ngrpc-status: 8\r\n"), "{text}");
    assert!(
        text.contains("\r\ngrpc-message: too%20many%20new%20accounts%20from%20your%20address"),
        "{text}"
    );
    // Nobody was created by the refused calls; existing accounts log in.
    for (name, password) in [("carl", "carl-password"), ("dora", "dora-password")] {
        expect_code(c.login(login(name, password)).await, Code::Unauthenticated);
    }
    for (name, password, who) in [("ann", "ann-password", &ann), ("bob", "bob-password", &bob)] {
        let me = c.login(login(name, password)).await.unwrap().into_inner();
        assert_eq!(me.account, who.account);
    }
    assert!(
        r.log_tail().contains("sign-ups used up"),
        "the operator is told once"
    );
    r.terminate().await;
}

#[tokio::test]
async fn logs_one_json_object_per_line_when_asked() {
    let dir = TestDir::new("json-logs");
    let mut r = Replica::new(dir.path(), 1, vec![]);
    r.extra_args = vec!["--log-format".into(), "json".into()];
    r.start().await;
    let mut c = r.client().await;
    register(&mut c, "ann", "ann-password").await;
    let status = r.terminate().await;
    assert!(status.success(), "exit status {status}");
    let log = r.log_tail();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let said = |message: &str| {
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == message)
    };
    assert!(said("serving"), "{log}");
    assert!(said("stopped"), "{log}");
    assert!(!log.contains("ann-password"), "{log}");
}

#[test]
fn a_malformed_log_filter_is_refused_with_a_reason() {
    let dir = TestDir::new("bad-log-filter");
    let out = std::process::Command::new(server_binary())
        .args(["--log-level", "info,chat_server=loud"])
        .args([
            "--client-addr",
            "127.0.0.1:0",
            "--replication-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("r"))
        .output()
        .expect("run chat-server");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a log filter"), "{err}");
}

#[test]
fn wildcard_addresses_that_would_be_announced_are_refused() {
    // Peers are told the replication address, clients the client URL: a
    // wildcard there would send them to themselves.
    let dir = TestDir::new("wildcard-addresses");
    let run = |client: &str, replication: &str, extra: &[&str]| {
        std::process::Command::new(server_binary())
            .args(["--client-addr", client, "--replication-addr", replication])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path().join("r"))
            .env("CHAT_CLUSTER_SECRET", SECRET)
            .output()
            .expect("run chat-server")
    };
    let out = run("127.0.0.1:0", "0.0.0.0:0", &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("peers are told to reach this replica at"),
        "{err}"
    );
    let out = run("0.0.0.0:0", "127.0.0.1:0", &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("add --advertise-url"), "{err}");
    // Nothing was created for either.
    assert!(!dir.path().join("r").exists());
}
