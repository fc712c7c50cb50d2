//! Bad input gets a clear status, never a panic, and loses nothing: every
//! case below runs against one replica, which must still hold all its data
//! and serve normally at the end.

use chat_tests::chat_server::auth::{ClusterSecret, Sessions};
use chat_tests::chat_server::ids::AccountId;
use chat_tests::chat_shared::limits::{
    IDS_PER_REQUEST_MAX, MESSAGE_MAX_BYTES, PASSWORD_MAX_BYTES, REQUEST_MAX_BYTES,
};
use chat_tests::chat_shared::proto;
use chat_tests::*;
use tonic::Code;

/// A CreateAccountRequest whose string fields are raw bytes, to send what a
/// well-behaved client cannot: invalid UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawCreateAccount {
    #[prost(bytes = "vec", tag = "1")]
    request_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    username: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    password: Vec<u8>,
}

/// Sends `msg` to `path` as raw protobuf.
async fn raw_call<M: prost::Message + Default + Send + 'static + Clone>(
    r: &Replica,
    path: &'static str,
    msg: M,
) -> Result<proto::AuthResponse, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(r.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(msg),
        http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::<M, proto::AuthResponse>::default(),
    )
    .await
    .map(|r| r.into_inner())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_loses_nothing() {
    let dir = TestDir::new("bad-input");
    let mut r = Replica::new(dir.path(), 1, vec![]);
    r.start().await;
    let mut c = r.client().await;
    let ann = register(&mut c, "ann", "ann-password").await;
    let bob = register(&mut c, "bob", "bob-password").await;
    let eve = register(&mut c, "eve", "eve-password").await;
    let (ann_id, bob_id) = (
        ann.account.clone().unwrap().id,
        bob.account.clone().unwrap().id,
    );
    let msg = c
        .send_message(authed(
            &ann.token,
            proto::SendMessageRequest {
                request_id: rid(),
                recipient_id: bob_id.clone(),
                body: "keep me".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();

    // --- Malformed and oversized requests ---------------------------------
    let invalid_utf8 = RawCreateAccount {
        request_id: rid(),
        username: vec![b'b', 0xff, 0xfe, b'x'],
        password: b"password-123".to_vec(),
    };
    let m = expect_code(
        raw_call(&r, "/chat.v1.Chat/CreateAccount", invalid_utf8).await,
        Code::InvalidArgument,
    );
    assert!(m.contains("malformed"), "{m}");
    #[derive(Clone, PartialEq, prost::Message)]
    struct Garbage {
        // Field 2 (username) sent as a varint: the wrong wire type.
        #[prost(uint64, tag = "2")]
        username: u64,
    }
    expect_code(
        raw_call(&r, "/chat.v1.Chat/CreateAccount", Garbage { username: 7 }).await,
        Code::InvalidArgument,
    );
    let huge = c
        .send_message(authed(
            &ann.token,
            proto::SendMessageRequest {
                request_id: rid(),
                recipient_id: bob_id.clone(),
                body: "x".repeat(REQUEST_MAX_BYTES + 1),
            },
        ))
        .await;
    let m = match huge {
        Err(s) if s.code() == Code::OutOfRange => s.message().to_string(),
        other => panic!("oversized request: {other:?}"),
    };
    assert!(m.contains("too large"), "{m}");

    // --- Field rules -------------------------------------------------------
    let create = |name: &str, pw: &str, request_id: Vec<u8>| proto::CreateAccountRequest {
        request_id,
        username: name.into(),
        password: pw.into(),
    };
    for (req, needle) in [
        (create("ab", "password-1", rid()), "3 to 32 characters"),
        (create("_under", "password-1", rid()), "may only contain"),
        (create("spa ce", "password-1", rid()), "may only contain"),
        (create("okname", "short", rid()), "at least 8"),
        (create("okname", &"p".repeat(300), rid()), "at most 256"),
        (create("okname", "password-1", vec![]), "request_id"),
        (create("okname", "password-1", vec![0; 16]), "all zeros"),
        (
            create("okname", "password-1", vec![1; 15]),
            "16 random bytes",
        ),
    ] {
        let m = expect_code(c.create_account(req).await, Code::InvalidArgument);
        assert!(m.contains(needle), "{m:?} should mention {needle:?}");
    }
    let send = |to: &str, body: String| proto::SendMessageRequest {
        request_id: rid(),
        recipient_id: to.into(),
        body,
    };
    for (req, code) in [
        (
            send(&bob_id, "x".repeat(MESSAGE_MAX_BYTES + 1)),
            Code::InvalidArgument,
        ),
        (send(&bob_id, "   ".into()), Code::InvalidArgument),
        (send(&bob_id, "bell\u{7}".into()), Code::InvalidArgument),
        (send(&ann_id, "to myself".into()), Code::InvalidArgument),
        (send("not-an-id", "hi".into()), Code::InvalidArgument),
        (send(&"ab".repeat(16), "hi".into()), Code::NotFound),
    ] {
        expect_code(c.send_message(authed(&ann.token, req)).await, code);
    }
    let page = |size: u32, cursor: &str| proto::GetHistoryRequest {
        peer_id: bob_id.clone(),
        page_size: size,
        cursor: cursor.into(),
    };
    expect_code(
        c.get_history(authed(&ann.token, page(10_000, ""))).await,
        Code::InvalidArgument,
    );
    expect_code(
        c.get_history(authed(&ann.token, page(5, "zzz"))).await,
        Code::InvalidArgument,
    );
    expect_code(
        c.get_history(authed(&ann.token, page(5, "abcd"))).await,
        Code::InvalidArgument,
    );
    expect_code(
        c.list_accounts(authed(
            &ann.token,
            proto::ListAccountsRequest {
                pattern: "a[b]".into(),
                ..Default::default()
            },
        ))
        .await,
        Code::InvalidArgument,
    );
    expect_code(
        c.list_unread(authed(
            &ann.token,
            proto::ListUnreadRequest { limit: 100_000 },
        ))
        .await,
        Code::InvalidArgument,
    );

    // --- Nobody touches another user's mail -------------------------------
    let mark = |ids: Vec<String>| proto::MarkReadRequest {
        request_id: rid(),
        message_ids: ids,
    };
    let delete = |ids: Vec<String>| proto::DeleteMessagesRequest {
        request_id: rid(),
        message_ids: ids,
    };
    expect_code(
        c.mark_read(authed(&eve.token, mark(vec![msg.id.clone()])))
            .await,
        Code::NotFound,
    );
    expect_code(
        c.delete_messages(authed(&eve.token, delete(vec![msg.id.clone()])))
            .await,
        Code::NotFound,
    );
    expect_code(
        c.mark_read(authed(&ann.token, mark(vec![msg.id.clone()])))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        c.mark_read(authed(&bob.token, mark(vec!["cd".repeat(16)])))
            .await,
        Code::NotFound,
    );
    expect_code(
        c.mark_read(authed(&bob.token, mark(vec!["XYZ".into()])))
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        c.mark_read(authed(&bob.token, mark(vec![]))).await,
        Code::InvalidArgument,
    );
    expect_code(
        c.delete_messages(authed(
            &bob.token,
            delete(vec![msg.id.clone(); IDS_PER_REQUEST_MAX + 1]),
        ))
        .await,
        Code::InvalidArgument,
    );
    // A batch with one foreign id is refused whole.
    expect_code(
        c.delete_messages(authed(
            &bob.token,
            delete(vec![msg.id.clone(), "ef".repeat(16)]),
        ))
        .await,
        Code::NotFound,
    );
    // Eve cannot read the conversation between Ann and Bob: her history with
    // either of them is her own, and empty.
    let h = c
        .get_history(authed(
            &eve.token,
            proto::GetHistoryRequest {
                peer_id: bob_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(h.messages.is_empty());

    // --- Sessions ------------------------------------------------------------
    let no_token = c.list_unread(proto::ListUnreadRequest::default()).await;
    assert!(expect_code(no_token, Code::Unauthenticated).contains("authorization"));
    for token in ["garbage", "a.b.c", ""] {
        expect_code(
            c.list_unread(authed(token, proto::ListUnreadRequest::default()))
                .await,
            Code::Unauthenticated,
        );
    }
    let mut basic = tonic::Request::new(proto::ListUnreadRequest::default());
    basic
        .metadata_mut()
        .insert("authorization", "Basic YW5uOnB3".parse().unwrap());
    expect_code(c.list_unread(basic).await, Code::Unauthenticated);
    let ann_account: AccountId = ann_id.parse().unwrap();
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"sub":"{ann_id}","iat":{},"exp":{}}}"#,
            now_secs(),
            now_secs() + 600
        ))
    );
    let other_secret = Sessions::new(
        &ClusterSecret::new(b"some-other-secret!".to_vec()).unwrap(),
        600,
    )
    .issue(ann_account, "$argon2id$any", now_secs())
    .0;
    let right_secret = Sessions::new(
        &ClusterSecret::new(SECRET.as_bytes().to_vec()).unwrap(),
        600,
    );
    let expired = right_secret
        .issue(ann_account, "$argon2id$any", now_secs() - 3600)
        .0;
    for (token, needle) in [
        (alg_none, "invalid"),
        (other_secret, "invalid"),
        (expired, "expired"),
    ] {
        let m = expect_code(
            c.list_unread(authed(&token, proto::ListUnreadRequest::default()))
                .await,
            Code::Unauthenticated,
        );
        assert!(m.contains(needle), "{m}");
    }
    // A token minted with the real secret passes the signature check (the
    // checks above are not vacuous) and is then refused only because it
    // names a password hash that is not ann's.
    let fresh = right_secret
        .issue(ann_account, "$argon2id$not-anns", now_secs())
        .0;
    let m = expect_code(
        c.list_unread(authed(&fresh, proto::ListUnreadRequest::default()))
            .await,
        Code::Unauthenticated,
    );
    assert!(m.contains("password was changed"), "{m}");

    // DeleteAccount checks its input before the password (nothing hashed,
    // no try counted): an oversized password, a bad request id.
    for (request_id, password, needle) in [
        (rid(), "x".repeat(PASSWORD_MAX_BYTES + 1), "at most"),
        (vec![0; 16], "ann-password".to_string(), "request_id"),
    ] {
        let m = expect_code(
            c.delete_account(authed(
                &ann.token,
                proto::DeleteAccountRequest {
                    request_id,
                    password,
                },
            ))
            .await,
            Code::InvalidArgument,
        );
        assert!(m.contains(needle), "{m}");
    }

    // --- Nothing was lost, and the replica still works ----------------------
    let unread = c
        .list_unread(authed(&bob.token, proto::ListUnreadRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unread.unread_count, 1);
    assert_eq!(unread.messages[0].body, "keep me");
    register(&mut c, "okname", "password-1").await;
    assert!(r.is_running());
}
