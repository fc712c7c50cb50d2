//! The replication service: the responder's side of introductions, relays
//! and heartbeats, and the status call.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::backlog;
use super::cluster::{Cluster, LinkState};
use super::introduce::{IntroError, MAX_CHUNKS_IN_FLIGHT, check_not_rolled_back, decode_chunk};
use crate::clock_agreement::Moment;
use crate::entry::Entry;
use crate::hlc::wall_clock_ms;
use crate::proto::replication::replication_server::Replication;
use crate::proto::replication::{
    EntryChunk, HeartbeatRequest, HeartbeatResponse, Hello, IntroduceRequest, IntroduceResponse,
    PeerStatus, PushRequest, PushResponse, RelayRequest, RelayResponse, ReplicaInfo, RetireRequest,
    RetireResponse, SnapshotChunk, SnapshotRequest, StatusRequest, StatusResponse,
    introduce_response,
};
use crate::writer::WriteError;

pub struct ReplicationService {
    cluster: Arc<Cluster>,
}

impl ReplicationService {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }
}

/// The calling replica, from a request's `from`, which must be complete,
/// not retired, and write the same log format as this replica.
pub(super) fn sender(cluster: &Cluster, from: Option<ReplicaInfo>) -> Result<ReplicaInfo, Status> {
    let from = from.ok_or_else(|| Status::invalid_argument("missing 'from'"))?;
    if from.id == 0 || from.instance.is_empty() || from.replication_addr.is_empty() {
        return Err(Status::invalid_argument("incomplete replica info"));
    }
    if cluster.is_retired(from.id) {
        tracing::debug!(peer = from.id, "refused a retired replica");
        return Err(Status::failed_precondition(format!(
            "replica {} {RETIRED}",
            from.id
        )));
    }
    same_log_format(&from).map_err(|e| {
        tracing::error!(peer = from.id, "{e}");
        Status::failed_precondition(e)
    })?;
    Ok(from)
}

/// Applies the chunks of a `Push` or `Forward` stream (`first`, then the
/// rest of `stream`), each checked by `check` and queued on the writer with
/// a few in flight, decoding the next while one is applied. Returns how
/// many entries came and how many were new here.
async fn apply_pushed(
    cluster: &Cluster,
    peer: u32,
    first: Option<EntryChunk>,
    stream: &mut Streaming<PushRequest>,
    check: impl Fn(&[Entry]) -> Result<(), Status>,
) -> Result<(usize, usize), Status> {
    let mut next = first;
    let mut in_flight = VecDeque::new();
    let mut received = 0;
    loop {
        if let Some(chunk) = next.take() {
            let entries = decode_chunk(chunk).map_err(|e| {
                tracing::error!(peer, error = %e, "refused entries the peer pushed or forwarded");
                Status::invalid_argument(e.to_string())
            })?;
            check(&entries)?;
            received += entries.len();
            let queued = cluster.writer.queue_remote(entries).await;
            in_flight.push_back(queued.map_err(write_status)?);
            if in_flight.len() > MAX_CHUNKS_IN_FLIGHT
                && let Some(oldest) = in_flight.pop_front()
            {
                oldest.await.map_err(write_status)?;
            }
        }
        match stream.message().await? {
            Some(msg) => next = msg.chunk,
            None => break,
        }
    }
    let mut applied = 0;
    for outcome in in_flight {
        applied += outcome.await.map_err(write_status)?.applied;
    }
    Ok((received, applied))
}

/// How a refusal of a retired replica reads; the refused replica recognises
/// it ([`is_retired_refusal`]) and stops.
const RETIRED: &str = "has been retired from this cluster by an operator";

pub(super) fn is_retired_refusal(status: &Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition && status.message().contains(RETIRED)
}

/// Refuses a peer that writes another log format than this build.
pub(super) fn same_log_format(peer: &ReplicaInfo) -> Result<(), String> {
    if peer.log_format == crate::entry::LOG_FORMAT {
        return Ok(());
    }
    Err(format!(
        "replica {} writes log format {}, this replica {}: every replica of a cluster must run the same build",
        peer.id,
        peer.log_format,
        crate::entry::LOG_FORMAT
    ))
}

fn write_status(e: WriteError) -> Status {
    match e {
        WriteError::Unavailable(m) => Status::unavailable(m),
        other => Status::internal(other.to_string()),
    }
}

type IntroduceStream = Pin<Box<dyn Stream<Item = Result<IntroduceResponse, Status>> + Send>>;
type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotChunk, Status>> + Send>>;
type RelayStream = Pin<Box<dyn Stream<Item = Result<RelayResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Replication for ReplicationService {
    type IntroduceStream = IntroduceStream;
    type SnapshotStream = SnapshotStream;
    type RelayStream = RelayStream;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let stream = super::snapshot::serve(&self.cluster, request.into_inner())?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn introduce(
        &self,
        request: Request<IntroduceRequest>,
    ) -> Result<Response<IntroduceStream>, Status> {
        let req = request.into_inner();
        let from = sender(&self.cluster, req.from)?;
        // The requester's cutoffs may show that *this* replica's data was
        // rolled back: it stops, and says so to the requester.
        if let Err(IntroError::RolledBack(why)) =
            check_not_rolled_back(&self.cluster, from.id, &req.cutoffs)
        {
            tracing::error!(peer = from.id, "{why}; stopping");
            self.cluster.halt(why);
            return Err(Status::failed_precondition(format!(
                "replica {} is stopping: its data is older than its own writes that you hold",
                self.cluster.me.id
            )));
        }
        let link = self
            .cluster
            .add_peer(from.clone())
            .map_err(|e| {
                tracing::error!(peer = from.id, error = %e, "refused an introduction");
                Status::failed_precondition(e.to_string())
            })?
            .ok_or_else(|| Status::failed_precondition("that address is this replica itself"))?;
        tracing::info!(peer = from.id, "peer introduces itself");
        link.touch();
        link.set_state(LinkState::Syncing);
        let have = backlog::from_proto(&req.cutoffs);
        let upto = self.cluster.writer.cutoffs();
        let hello = Hello {
            responder: Some(self.cluster.me.clone()),
            network: self.cluster.network(),
            cutoffs: backlog::to_proto(&upto),
            clock_ms: wall_clock_ms(),
        };
        let mut chunks = backlog::spawn(self.cluster.store.clone(), have, upto);
        let (tx, rx) = mpsc::channel(2);
        let _ = tx
            .send(Ok(IntroduceResponse {
                kind: Some(introduce_response::Kind::Hello(hello)),
            }))
            .await;
        tokio::spawn(async move {
            while let Some(chunk) = chunks.recv().await {
                let msg = chunk
                    .map(|entries| IntroduceResponse {
                        kind: Some(introduce_response::Kind::Chunk(EntryChunk {
                            entries: entries.iter().map(Entry::to_proto).collect(),
                        })),
                    })
                    .map_err(|e| Status::internal(e.to_string()));
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn push(
        &self,
        request: Request<Streaming<PushRequest>>,
    ) -> Result<Response<PushResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty push"))?;
        let from = sender(&self.cluster, first.from)?;
        let link = self
            .cluster
            .link(from.id)
            .filter(|l| l.info().instance == from.instance)
            .ok_or_else(|| Status::failed_precondition("introduce yourself before pushing"))?;
        let theirs = backlog::from_proto(&first.cutoffs);
        apply_pushed(&self.cluster, from.id, first.chunk, &mut stream, |_| Ok(())).await?;
        link.set_live(theirs.get(&self.cluster.origin()).copied().unwrap_or(0));
        tracing::info!(peer = from.id, "introduction complete; link live");
        Ok(Response::new(PushResponse {
            cutoffs: backlog::to_proto(&self.cluster.writer.cutoffs()),
        }))
    }

    async fn forward(
        &self,
        request: Request<Streaming<PushRequest>>,
    ) -> Result<Response<PushResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty forward"))?;
        let from = sender(&self.cluster, first.from)?;
        // Only from a peer this replica relays to and accepts relays from:
        // one it wrote off must introduce itself first, as for relays.
        self.cluster
            .link(from.id)
            .filter(|l| l.info().instance == from.instance && l.state() == LinkState::Live)
            .ok_or_else(|| Status::failed_precondition("introduce yourself before forwarding"))?;
        let mine = crate::origin::replica(self.cluster.origin());
        // A replica's own entries come from its own log, or from an
        // introduction: never forwarded to it while it runs.
        let not_mine = |entries: &[Entry]| {
            if entries
                .iter()
                .any(|e| crate::origin::replica(e.origin) == mine)
            {
                return Err(Status::invalid_argument(
                    "forwarded entries of the receiving replica's own origins",
                ));
            }
            Ok(())
        };
        let (forwarded, applied) =
            apply_pushed(&self.cluster, from.id, first.chunk, &mut stream, not_mine).await?;
        tracing::info!(
            peer = from.id,
            forwarded,
            applied,
            "received entries of other replicas that had not reached this one"
        );
        Ok(Response::new(PushResponse {
            cutoffs: backlog::to_proto(&self.cluster.writer.cutoffs()),
        }))
    }

    async fn relay(
        &self,
        request: Request<Streaming<RelayRequest>>,
    ) -> Result<Response<RelayStream>, Status> {
        let (tx, rx) = mpsc::channel(RELAY_ANSWERS_BUFFERED);
        tokio::spawn(serve_relay(self.cluster.clone(), request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let from = sender(&self.cluster, request.into_inner().from)?;
        let caller_live = match self.cluster.link(from.id) {
            Some(link) if link.info().instance == from.instance => {
                link.touch();
                link.state() != LinkState::Dead
            }
            _ => false,
        };
        Ok(Response::new(HeartbeatResponse {
            responder: Some(self.cluster.me.clone()),
            caller_live,
            network: self.cluster.network(),
            clock_ms: wall_clock_ms(),
        }))
    }

    async fn retire(
        &self,
        request: Request<RetireRequest>,
    ) -> Result<Response<RetireResponse>, Status> {
        super::retire::handle(&self.cluster, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let store = self.cluster.store.clone();
        let digest = if request.into_inner().without_digest {
            String::new()
        } else {
            tokio::task::spawn_blocking(move || crate::state::digest::digest(&store.reader()))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::unavailable(e.to_string()))?
        };
        let cutoffs = self.cluster.writer.cutoffs();
        Ok(Response::new(StatusResponse {
            replica: Some(self.cluster.me.clone()),
            log_entries: cutoffs.values().sum(),
            cutoffs: backlog::to_proto(&cutoffs),
            peers: self
                .cluster
                .links()
                .iter()
                .map(|l| PeerStatus {
                    info: Some(l.info()),
                    live: l.state() == LinkState::Live,
                    retired: l.state() == LinkState::Retired,
                    last_contact_ms_ago: l.last_contact().map_or(-1, |d| d.as_millis() as i64),
                    clock_offset_ms: l
                        .clock(Duration::from_secs(60), &Moment::now())
                        .map(|r| r.offset_ms),
                })
                .collect(),
            state_digest: digest,
            serving: self.cluster.serving.load(Ordering::Relaxed),
            origin: self.cluster.origin(),
            clock_refusal: self.cluster.clock.refusal().unwrap_or_default(),
        }))
    }
}

/// Answers not yet taken by the relaying peer's connection. The peer has at
/// most `link::MAX_BATCHES_IN_FLIGHT` batches unanswered, so this is never
/// reached in practice.
const RELAY_ANSWERS_BUFFERED: usize = 16;

/// What became of one batch of a relay stream.
enum Verdict {
    /// Durable here.
    Applied,
    /// Refused (the sender is dead to us, or the batch skips entries): the
    /// sender must introduce itself again.
    Resync,
    Failed(Status),
}

type Applying = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// The receiving end of a peer's relay stream. Each batch is checked (is the
/// sender live to us? are these its own entries?) and queued on the writer
/// as it arrives, so batches pipeline: the writer may commit one while the
/// next is on the wire. The answers go back in arrival order, each once its
/// batch is durable here -- the writer applies its queue in order, so the
/// oldest batch is always the first to finish. A refused batch ends the
/// stream with a resync answer: at once if the sender is not live to us
/// (nothing behind it is read), or when the writer finds that it skips
/// entries (batches queued behind it meanwhile are still applied if they
/// continue the log, since the writer checks each origin's order entry by
/// entry).
async fn serve_relay(
    cluster: Arc<Cluster>,
    mut inbound: Streaming<RelayRequest>,
    out: mpsc::Sender<Result<RelayResponse, Status>>,
) {
    let mut from: Option<ReplicaInfo> = None;
    // The sender's current origin, from its entries (every batch carries
    // some): the one its answers give our cutoff of.
    let mut origin = 0;
    let mut applying: VecDeque<Applying> = VecDeque::new();
    let mut reading = true;
    loop {
        if !reading && applying.is_empty() {
            return;
        }
        tokio::select! {
            verdict = async { applying.front_mut().expect("guarded").await }, if !applying.is_empty() => {
                applying.pop_front();
                let cutoff = cluster.writer.cutoffs().get(&origin).copied().unwrap_or(0);
                let (reply, end) = match verdict {
                    Verdict::Applied => {
                        if let Some(link) = from.as_ref().and_then(|f| cluster.link(f.id)) {
                            link.touch();
                        }
                        let clock_ms = wall_clock_ms();
                        (Ok(RelayResponse { resync: false, cutoff, clock_ms }), false)
                    }
                    Verdict::Resync => (Ok(RelayResponse { resync: true, cutoff, clock_ms: 0 }), true),
                    Verdict::Failed(status) => (Err(status), true),
                };
                if out.send(reply).await.is_err() || end {
                    return;
                }
            }
            msg = inbound.message(), if reading => match msg {
                Ok(Some(req)) => {
                    if from.is_none() {
                        match sender(&cluster, req.from) {
                            Ok(f) => from = Some(f),
                            Err(status) => {
                                let _ = out.send(Err(status)).await;
                                return;
                            }
                        }
                    }
                    let Some(from) = from.as_ref() else { return };
                    let verdict: Applying = match accept_batch(&cluster, from, req.entries) {
                        Ok(Some(entries)) => {
                            origin = entries.first().map_or(origin, |e| e.origin);
                            match cluster.writer.queue_remote(entries).await {
                                Ok(outcome) => {
                                    let peer = from.id;
                                    Box::pin(async move {
                                        match outcome.await {
                                            Ok(_) => Verdict::Applied,
                                            Err(WriteError::Gap { held, got, .. }) => {
                                                tracing::warn!(peer, held, got, "relay skips entries: resync");
                                                Verdict::Resync
                                            }
                                            Err(e) => Verdict::Failed(write_status(e)),
                                        }
                                    })
                                }
                                Err(e) => Box::pin(std::future::ready(Verdict::Failed(write_status(e)))),
                            }
                        }
                        Ok(None) => {
                            reading = false;
                            Box::pin(std::future::ready(Verdict::Resync))
                        }
                        Err(status) => {
                            reading = false;
                            Box::pin(std::future::ready(Verdict::Failed(status)))
                        }
                    };
                    applying.push_back(verdict);
                }
                // The sender closed its side: answer what is under way, then end.
                Ok(None) => reading = false,
                // The sender is gone; nobody waits for the answers.
                Err(_) => return,
            },
        }
    }
}

/// Checks one batch of a relay stream from `from`: `None` if the sender is
/// not live to us (it must resync), an error if the batch is malformed.
fn accept_batch(
    cluster: &Cluster,
    from: &ReplicaInfo,
    batch: Vec<crate::proto::replication::Entry>,
) -> Result<Option<Vec<Entry>>, Status> {
    let live = cluster.link(from.id).is_some_and(|link| {
        link.state() == LinkState::Live && link.info().instance == from.instance
    });
    if !live {
        tracing::debug!(peer = from.id, "relay from a peer we consider dead: resync");
        return Ok(None);
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(batch.len());
    for e in batch {
        let e = Entry::from_peer(e).map_err(|e| {
            tracing::error!(peer = from.id, error = %e, "refused a relayed entry");
            Status::invalid_argument(e.to_string())
        })?;
        if crate::origin::replica(e.origin) != from.id {
            return Err(Status::invalid_argument(
                "a relay carries only the sender's own entries",
            ));
        }
        if entries
            .first()
            .is_some_and(|first| first.origin != e.origin)
        {
            return Err(Status::invalid_argument(
                "a relay batch carries entries of one origin",
            ));
        }
        entries.push(e);
    }
    Ok(Some(entries))
}
