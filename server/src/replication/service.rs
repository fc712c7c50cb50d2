//! The replication service: the responder's side of introductions, relays
//! and heartbeats, and the status call.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::backlog;
use super::cluster::{Cluster, LinkState};
use super::introduce::{MAX_CHUNKS_IN_FLIGHT, decode_chunk};
use crate::entry::Entry;
use crate::proto::replication::replication_server::Replication;
use crate::proto::replication::{
    EntryChunk, HeartbeatRequest, HeartbeatResponse, Hello, IntroduceRequest, IntroduceResponse,
    PeerStatus, PushRequest, PushResponse, RelayRequest, RelayResponse, ReplicaInfo, SnapshotChunk,
    SnapshotRequest, StatusRequest, StatusResponse, introduce_response,
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

/// The calling replica, from a request's `from`, which must be complete.
pub(super) fn sender(from: Option<ReplicaInfo>) -> Result<ReplicaInfo, Status> {
    let from = from.ok_or_else(|| Status::invalid_argument("missing 'from'"))?;
    if from.id == 0 || from.instance.is_empty() || from.replication_addr.is_empty() {
        return Err(Status::invalid_argument("incomplete replica info"));
    }
    Ok(from)
}

fn write_status(e: WriteError) -> Status {
    match e {
        WriteError::Unavailable(m) => Status::unavailable(m),
        other => Status::internal(other.to_string()),
    }
}

type IntroduceStream = Pin<Box<dyn Stream<Item = Result<IntroduceResponse, Status>> + Send>>;
type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Replication for ReplicationService {
    type IntroduceStream = IntroduceStream;
    type SnapshotStream = SnapshotStream;

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
        let from = sender(req.from)?;
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
        let from = sender(first.from)?;
        let link = self
            .cluster
            .link(from.id)
            .filter(|l| l.info().instance == from.instance)
            .ok_or_else(|| Status::failed_precondition("introduce yourself before pushing"))?;
        let theirs = backlog::from_proto(&first.cutoffs);
        let mut next = first.chunk;
        let mut in_flight = std::collections::VecDeque::new();
        loop {
            if let Some(chunk) = next.take() {
                let entries =
                    decode_chunk(chunk).map_err(|e| Status::invalid_argument(e.to_string()))?;
                let queued = self.cluster.writer.queue_remote(entries).await;
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
        for applied in in_flight {
            applied.await.map_err(write_status)?;
        }
        link.set_live(theirs.get(&self.cluster.me.id).copied().unwrap_or(0));
        tracing::info!(peer = from.id, "introduction complete; link live");
        Ok(Response::new(PushResponse {
            cutoffs: backlog::to_proto(&self.cluster.writer.cutoffs()),
        }))
    }

    async fn relay(
        &self,
        request: Request<RelayRequest>,
    ) -> Result<Response<RelayResponse>, Status> {
        let req = request.into_inner();
        let from = sender(req.from)?;
        let cutoff = |c: &Cluster| c.writer.cutoffs().get(&from.id).copied().unwrap_or(0);
        let resync = |c: &Cluster| {
            Ok(Response::new(RelayResponse {
                resync: true,
                cutoff: cutoff(c),
            }))
        };
        let Some(link) = self.cluster.link(from.id) else {
            return resync(&self.cluster);
        };
        if link.info().instance != from.instance || link.state() != LinkState::Live {
            tracing::debug!(peer = from.id, state = ?link.state(), "relay from a peer we consider dead: resync");
            return resync(&self.cluster);
        }
        let mut entries = Vec::with_capacity(req.entries.len());
        for e in req.entries {
            let e = Entry::from_proto(e).map_err(|e| Status::invalid_argument(e.to_string()))?;
            if e.origin != from.id {
                return Err(Status::invalid_argument(
                    "a relay carries only the sender's own entries",
                ));
            }
            entries.push(e);
        }
        match self.cluster.writer.apply_remote(entries).await {
            Ok(_) => {
                link.touch();
                Ok(Response::new(RelayResponse {
                    resync: false,
                    cutoff: cutoff(&self.cluster),
                }))
            }
            Err(WriteError::Gap { held, got, .. }) => {
                tracing::warn!(peer = from.id, held, got, "relay skips entries: resync");
                resync(&self.cluster)
            }
            Err(e) => Err(write_status(e)),
        }
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let from = sender(request.into_inner().from)?;
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
        }))
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
                    last_contact_ms_ago: l.last_contact().map_or(-1, |d| d.as_millis() as i64),
                })
                .collect(),
            state_digest: digest,
            serving: self.cluster.serving.load(Ordering::Relaxed),
        }))
    }
}
