//! Prometheus metrics: what an operator watches on a running replica.
//!
//! Three questions decide what is measured here:
//!
//! * **Are clients being served?** Calls per client API method and gRPC
//!   status code, and how long each method takes (the client's view,
//!   relay-or-fail included: a send's time is its durable write here and on
//!   every live peer).
//! * **Is the disk keeping up?** Every group commit (`writer`) is counted
//!   with the log entries it wrote and how long its atomic, fdatasync'ed
//!   write took. Entries per commit say how well concurrent writes share an
//!   fdatasync; commit time is the disk's latency as writes see it.
//! * **Is the cluster whole?** Which peers this replica considers live, how
//!   often each was written off, how long since each was heard from and how
//!   long each takes to make a relayed batch durable, how many log entries
//!   this replica holds, whether it serves clients yet, and how many live
//!   subscriptions are open.
//!
//! Counters and histograms are process-wide and updated where things happen
//! (an observation costs a few atomic operations and one uncontended lock).
//! The gauges describe state that already exists elsewhere (peer links,
//! cutoffs, subscriptions), so they are read from it when scraped and cost
//! nothing in between.
//!
//! Served as OpenMetrics text on `GET /metrics` at `--metrics-addr`, off by
//! default, never on the client port: the endpoint is not authenticated, so
//! it belongs on a private interface. It shows counts, latencies and
//! replication state -- never an account, a message or a secret.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::events::EventHub;
use crate::replication::{Cluster, LinkState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: u32,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 100 µs to ~6.5 s, doubling: a cached read to a replica stalled on its
/// disk.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// What the request path and the writer update.
struct Instruments {
    calls: Family<CallLabels, Counter>,
    call_seconds: HistogramFamily<MethodLabels>,
    commits: Counter,
    commit_failures: Counter,
    commit_entries: Histogram,
    commit_seconds: Histogram,
    relay_entries: Family<PeerLabels, Counter>,
    relay_seconds: HistogramFamily<PeerLabels>,
    peer_down: Family<PeerLabels, Counter>,
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| Instruments {
    calls: Family::default(),
    call_seconds: Family::new_with_constructor(latency_histogram),
    commits: Counter::default(),
    commit_failures: Counter::default(),
    // 1 to 1024 (`writer::MAX_BATCH` jobs, each usually one entry).
    commit_entries: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
    commit_seconds: latency_histogram(),
    relay_entries: Family::default(),
    relay_seconds: Family::new_with_constructor(latency_histogram),
    peer_down: Family::default(),
});

/// Records one client API call: its method (as named in the proto), how it
/// ended, and how long it took.
pub fn record_call(method: &'static str, code: tonic::Code, took: Duration) {
    let m = &*INSTRUMENTS;
    m.calls
        .get_or_create(&CallLabels {
            method,
            code: code_name(code),
        })
        .inc();
    m.call_seconds
        .get_or_create(&MethodLabels { method })
        .observe(took.as_secs_f64());
}

/// Records one group commit of `entries` log entries that took `took`.
pub fn record_commit(entries: usize, took: Duration, ok: bool) {
    let m = &*INSTRUMENTS;
    if ok {
        m.commits.inc();
        m.commit_entries.observe(entries as f64);
        m.commit_seconds.observe(took.as_secs_f64());
    } else {
        m.commit_failures.inc();
    }
}

/// Records a batch of `entries` sent to `peer` on its relay stream.
pub fn record_relay_sent(peer: u32, entries: usize) {
    INSTRUMENTS
        .relay_entries
        .get_or_create(&PeerLabels { peer })
        .inc_by(entries as u64);
}

/// Records `peer`'s durable acknowledgement of a relayed batch, `took`
/// after the batch was sent.
pub fn record_relay_answered(peer: u32, took: Duration) {
    INSTRUMENTS
        .relay_seconds
        .get_or_create(&PeerLabels { peer })
        .observe(took.as_secs_f64());
}

/// Records that `peer`, live until now, was written off.
pub fn record_peer_down(peer: u32) {
    INSTRUMENTS
        .peer_down
        .get_or_create(&PeerLabels { peer })
        .inc();
}

/// The gRPC status code as gRPC names it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// The registry of one replica, with the gauges read at scrape time.
struct Exporter {
    registry: Registry,
    cluster: Arc<Cluster>,
    events: EventHub,
    serving: Gauge,
    log_entries: Gauge,
    subscriptions: Gauge,
    peer_up: Family<PeerLabels, Gauge>,
    peer_silence: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    peer_clock_offset: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    clock_refusing: Gauge,
    batch_running: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// One scrape at a time: each rewrites the peer gauges.
    rendering: Mutex<()>,
}

impl Exporter {
    fn new(cluster: Arc<Cluster>, events: EventHub) -> Self {
        let m = &*INSTRUMENTS;
        let mut registry = Registry::with_prefix("chat");
        registry.register(
            "requests",
            "Client API calls by method and gRPC status code",
            m.calls.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time to answer a client API call (a write: durable here and on every live peer)",
            Unit::Seconds,
            m.call_seconds.clone(),
        );
        registry.register(
            "commits",
            "Group commits written (one atomic, fdatasync'ed write each)",
            m.commits.clone(),
        );
        registry.register(
            "commit_failures",
            "Group commits the store refused (the replica then refuses writes)",
            m.commit_failures.clone(),
        );
        registry.register(
            "commit_entries",
            "Log entries written per group commit",
            m.commit_entries.clone(),
        );
        registry.register_with_unit(
            "commit_duration",
            "Time to write a group commit durably (fdatasync included)",
            Unit::Seconds,
            m.commit_seconds.clone(),
        );
        registry.register(
            "relay_entries",
            "Log entries of this replica sent to the peer on its relay stream",
            m.relay_entries.clone(),
        );
        registry.register_with_unit(
            "relay_duration",
            "Time from sending a batch to the peer until it answers that the batch is durable there",
            Unit::Seconds,
            m.relay_seconds.clone(),
        );
        registry.register(
            "peer_down",
            "Times the peer, live until then, was written off (it must re-introduce itself)",
            m.peer_down.clone(),
        );
        let mut e = Self {
            registry,
            cluster,
            events,
            serving: Gauge::default(),
            log_entries: Gauge::default(),
            subscriptions: Gauge::default(),
            peer_up: Family::default(),
            peer_silence: Family::default(),
            peer_clock_offset: Family::default(),
            clock_refusing: Gauge::default(),
            batch_running: Gauge::default(),
            rendering: Mutex::new(()),
        };
        e.registry.register(
            "serving",
            "1 once the replica has synced with its peers and serves clients",
            e.serving.clone(),
        );
        e.registry.register(
            "log_entries",
            "Log entries held, all origins together",
            e.log_entries.clone(),
        );
        e.registry.register_with_unit(
            "writer_batch_running",
            "How long the writer's current batch (checks, journal append, fdatasync) has been running; 0 when idle. A finished commit shows in commit_duration, a hung one only here",
            Unit::Seconds,
            e.batch_running.clone(),
        );
        e.registry.register(
            "live_subscriptions",
            "Open Subscribe streams",
            e.subscriptions.clone(),
        );
        e.registry.register(
            "peer_up",
            "1 if this replica considers the peer live (it relays to it), else 0",
            e.peer_up.clone(),
        );
        e.registry.register_with_unit(
            "peer_clock_offset",
            "How far the peer's wall clock is ahead of this replica's (negative: behind), from the latest exchange (absent if none recent)",
            Unit::Seconds,
            e.peer_clock_offset.clone(),
        );
        e.registry.register(
            "clock_refusing",
            "1 while this replica refuses clients because its clock is off from most of the cluster's",
            e.clock_refusing.clone(),
        );
        e.registry.register_with_unit(
            "peer_silence",
            "Time since the peer was last heard from (absent if never)",
            Unit::Seconds,
            e.peer_silence.clone(),
        );
        e
    }

    fn render(&self) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        let cluster = &self.cluster;
        self.serving.set(i64::from(
            cluster.serving.load(std::sync::atomic::Ordering::Relaxed),
        ));
        let entries: u64 = cluster.writer.cutoffs().values().sum();
        self.log_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.subscriptions
            .set(i64::try_from(self.events.subscribers()).unwrap_or(i64::MAX));
        let running = cluster.writer.clock().running_for().unwrap_or_default();
        self.batch_running.set(running.as_secs_f64());
        self.clock_refusing
            .set(i64::from(cluster.clock.refusal().is_some()));
        // Retired peers leave the family; the rest are rewritten.
        let now = crate::clock_agreement::Moment::now();
        self.peer_up.clear();
        self.peer_silence.clear();
        self.peer_clock_offset.clear();
        for link in cluster.links() {
            let state = link.state();
            if state == LinkState::Retired {
                continue;
            }
            let peer = PeerLabels {
                peer: link.info().id,
            };
            self.peer_up
                .get_or_create(&peer)
                .set(i64::from(state == LinkState::Live));
            if let Some(reading) = link.clock(Duration::from_secs(60), &now) {
                self.peer_clock_offset
                    .get_or_create(&peer)
                    .set(reading.offset_ms as f64 / 1000.0);
            }
            if let Some(ago) = link.last_contact() {
                self.peer_silence
                    .get_or_create(&peer)
                    .set(ago.as_secs_f64());
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

async fn scrape(State(exporter): State<Arc<Exporter>>) -> impl IntoResponse {
    match exporter.render() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "could not encode the metrics".to_owned(),
        ),
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    events: EventHub,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let exporter = Arc::new(Exporter::new(cluster, events));
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(exporter);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_grpc_name() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "InvalidArgument");
        assert_eq!(code_name(tonic::Code::Cancelled), "Canceled");
    }
}
