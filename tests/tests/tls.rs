//! TLS on both ports: clients reach a replica over TLS, replicas relay to
//! each other over TLS, and a plaintext client is turned away.

use std::time::Duration;

use chat_tests::chat_shared::proto;
use chat_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_replication_over_tls() {
    let mut cluster = TestCluster::new("tls", 2);
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    let cert_path = cluster.dir.path().join("cert.pem");
    let key_path = cluster.dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    for r in &mut cluster.replicas {
        r.extra_args = vec![
            "--tls-cert".into(),
            cert_path.display().to_string(),
            "--tls-key".into(),
            key_path.display().to_string(),
        ];
        r.tls_ca = Some(cert.cert.pem().into_bytes());
        r.spawn();
    }
    for r in &mut cluster.replicas {
        r.wait_ready(Duration::from_secs(30)).await;
    }
    cluster.converge(Duration::from_secs(30)).await;

    let mut c1 = cluster.r(1).client().await;
    let ann = register(&mut c1, "ann", "ann-password").await;
    let bob = register(&mut c1, "bob", "bob-password").await;
    let sent = c1
        .send_message(authed(
            &ann.token,
            proto::SendMessageRequest {
                request_id: rid(),
                recipient_id: bob.account.unwrap().id,
                body: "over tls".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    // Relayed over TLS before the answer: readable on replica 2 at once.
    let mut c2 = cluster.r(2).client().await;
    let unread = c2
        .list_unread(authed(&bob.token, proto::ListUnreadRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unread.messages[0].id, sent.id);
    // The server list advertises https URLs.
    let servers = c2
        .list_servers(proto::ListServersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        servers
            .servers
            .iter()
            .all(|s| s.url.starts_with("https://")),
        "{servers:?}"
    );

    // Plaintext gets nowhere.
    let plain =
        tonic::transport::Channel::from_shared(format!("http://{}", cluster.r(1).client_addr))
            .unwrap()
            .timeout(Duration::from_secs(5))
            .connect()
            .await;
    if let Ok(channel) = plain {
        let r = proto::chat_client::ChatClient::new(channel)
            .list_servers(proto::ListServersRequest {})
            .await;
        assert!(r.is_err(), "a plaintext call was answered: {r:?}");
    }
}

/// A certificate or key that cannot serve TLS, or a CA that cannot check
/// peers, stops the start at once with a sentence naming the file -- before
/// the replica records a run, so a restart loop on a bad file uses up none
/// of its origins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_stop_the_start_with_a_sentence_and_use_no_origin() {
    let mut cluster = TestCluster::new("tls-bad", 1);
    let dir = cluster.dir.path().to_path_buf();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let names = vec!["127.0.0.1".to_string()];
    let good = rcgen::generate_simple_self_signed(names.clone()).expect("certificate");
    let other = rcgen::generate_simple_self_signed(names).expect("certificate");
    let cert = write("cert.pem", &good.cert.pem());
    let key = write("key.pem", &good.signing_key.serialize_pem());
    let other_key = write("other-key.pem", &other.signing_key.serialize_pem());
    let garbage = write("garbage.pem", "not a certificate\n");
    let tls = |cert: &str, key: &str| -> Vec<String> {
        vec![
            "--tls-cert".into(),
            cert.into(),
            "--tls-key".into(),
            key.into(),
        ]
    };
    let mut with_ca = tls(&cert, &key);
    with_ca.extend(["--tls-ca".to_string(), garbage.clone()]);
    let cases = [
        (tls(&garbage, &key), "cannot serve TLS with --tls-cert"),
        (tls(&cert, &garbage), "cannot serve TLS with --tls-cert"),
        // The key of another certificate.
        (tls(&cert, &other_key), "cannot serve TLS with --tls-cert"),
        (with_ca, "cannot be used to check the peers' certificates"),
    ];
    let r = cluster.r(1);
    for (args, said) in cases {
        r.extra_args = args.clone();
        r.spawn();
        assert_ne!(r.wait_exit(Duration::from_secs(30)).await, 0, "{args:?}");
        let log = r.log_tail();
        assert!(log.contains(said), "{args:?}: {log}");
        assert!(!log.contains("serving"), "{args:?}: {log}");
    }

    r.extra_args = tls(&cert, &key);
    r.tls_ca = Some(good.cert.pem().into_bytes());
    r.start().await;
    assert_eq!(cluster.status(1).await.unwrap().origin, 1);
}
