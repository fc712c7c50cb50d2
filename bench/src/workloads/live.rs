//! `live`: live delivery. Each client is a pair: a sender on replica i and
//! its recipient subscribed on replica i+1. The sender sends, waits for the
//! acknowledgement, then for the event on the recipient's stream. Measures
//! the time from the acknowledgement to the event (zero when the event came
//! first: the recipient's replica applied the entry before the sender heard
//! back).

use std::time::{Duration, Instant};

use chat_shared::proto::{self, CreateAccountRequest, SendMessageRequest, event};
use chat_tests::authed;
use tokio_stream::StreamExt;

use crate::stats::Row;
use crate::target::Target;

pub async fn run(target: &Target, clients: usize, duration: Duration, tag: &str) -> Row {
    let mut tasks = Vec::new();
    let start = Instant::now() + Duration::from_secs(1);
    for i in 0..clients {
        let mut sc = target.client(i).await;
        let mut rc = target.client(i + 1).await;
        let make = async |c: &mut chat_shared::proto::chat_client::ChatClient<_>, who: &str| {
            c.create_account(CreateAccountRequest {
                request_id: rand::random::<[u8; 16]>().to_vec(),
                username: format!("l{tag}-{i}{who}"),
                password: "bench-password".into(),
            })
            .await
            .expect("account")
            .into_inner()
        };
        let sender = make(&mut sc, "s").await;
        let recipient = make(&mut rc, "r").await;
        let mut events = rc
            .subscribe(authed(&recipient.token, proto::SubscribeRequest {}))
            .await
            .expect("subscribe")
            .into_inner();
        events
            .next()
            .await
            .expect("subscribed")
            .expect("subscribed");
        let to = recipient.account.expect("account").id;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut end_to_end = Vec::new();
            tokio::time::sleep_until(start.into()).await;
            let end = start + duration;
            let mut n = 0;
            while Instant::now() < end {
                let req = SendMessageRequest {
                    request_id: rand::random::<[u8; 16]>().to_vec(),
                    recipient_id: to.clone(),
                    body: format!("live {n}"),
                };
                n += 1;
                let mut send = sc.clone();
                let sent_at = Instant::now();
                let token = sender.token.clone();
                let sent = tokio::spawn(async move {
                    let r = send.send_message(authed(&token, req)).await;
                    (r, Instant::now())
                });
                let received = loop {
                    match events.next().await {
                        Some(Ok(proto::Event {
                            kind: Some(event::Kind::Message(_)),
                        })) => break Instant::now(),
                        Some(Ok(_)) => continue,
                        other => panic!("subscription ended: {other:?}"),
                    }
                };
                let (result, acked) = sent.await.expect("send task");
                result.expect("send");
                lat.push(received.saturating_duration_since(acked));
                end_to_end.push(received - sent_at);
            }
            (lat, end_to_end)
        }));
    }
    let (mut all, mut e2e) = (Vec::new(), Vec::new());
    for t in tasks {
        let (lat, end_to_end) = t.await.expect("live task");
        all.extend(lat);
        e2e.extend(end_to_end);
    }
    let mut row = Row::from_latencies("live", clients, all, duration);
    // Also from the send's start: what a person watching both screens sees.
    let send_to_event = Row::from_latencies("", clients, e2e, duration);
    row.extra.insert(
        "send_to_event_p50_ms".into(),
        round2(send_to_event.p50_ms).into(),
    );
    row.extra.insert(
        "send_to_event_p99_ms".into(),
        round2(send_to_event.p99_ms).into(),
    );
    row
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
