//! This replica's view of the cluster: who the peers are, how to reach them,
//! and whether each is live -- plus the start-up sequence.
//!
//! Liveness is per link and symmetric in meaning: while this replica
//! considers peer P live it relays every local entry to P before answering
//! the client, and it accepts P's relays. When a relay or heartbeat to P
//! fails, P becomes dead: writes here stop waiting for P, and P's relays are
//! refused with "resync" until P introduces itself again, which fills every
//! gap in both directions.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_shared::proto::Server;
use prost::Message;
use tokio::sync::{Notify, mpsc, watch};

use super::client::{Dialer, PeerClient};
use super::introduce::{IntroError, introduce};
use super::link;
use crate::api::ServerList;
use crate::clock_agreement::{ClockAgreement, Moment, Reading};
use crate::entry::Entry;
use crate::proto::replication::ReplicaInfo;
use crate::state::StorageError;
use crate::storage::Store;
use crate::writer::Writer;

/// Timing of the replication protocol.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A relay (or heartbeat) not answered within this is a dead peer. Must
    /// exceed the disk's worst fsync stall (~0.7 s on our machines).
    pub relay_timeout: Duration,
    /// Interval between heartbeats to an idle live peer, and between
    /// introduction attempts to a dead one (twice this).
    pub heartbeat: Duration,
    /// How often to compare logs with each live peer (`super::repair`).
    pub repair_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not relaying; its relays are refused. The link task keeps trying to
    /// introduce itself to the peer.
    Dead,
    /// An introduction with the peer is under way.
    Syncing,
    /// Relaying, and accepting its relays.
    Live,
    /// Removed from the cluster by an operator, for good: never relayed to,
    /// refused whenever it calls. Final: no other state follows it.
    Retired,
}

/// A local entry batch waiting to be relayed to one peer.
pub struct RelayItem {
    pub entries: Arc<Vec<Entry>>,
    /// Settled (dropped) once the peer holds the entries or has been marked
    /// dead: either way, the batch no longer waits for it.
    pub done: super::relay::Settle,
}

struct LinkStatus {
    state: LinkState,
    since: Instant,
    /// Counts state changes: a relay stream opened in one live period is
    /// not reused in the next.
    generation: u64,
    last_contact: Option<Instant>,
    /// Highest sequence number of *this* replica's current origin
    /// (`Cluster::origin`) the peer is known to hold: where relaying resumes.
    peer_has: u64,
}

/// One peer, as seen from here.
pub struct Link {
    pub id: u32,
    info: Mutex<ReplicaInfo>,
    status: Mutex<LinkStatus>,
    queue: mpsc::UnboundedSender<RelayItem>,
    changed: Notify,
    /// The latest comparison of the peer's clock with ours.
    clock: Mutex<Option<Reading>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Link {
    fn new(info: ReplicaInfo, state: LinkState, queue: mpsc::UnboundedSender<RelayItem>) -> Self {
        Link {
            id: info.id,
            info: Mutex::new(info),
            status: Mutex::new(LinkStatus {
                state,
                since: Instant::now(),
                generation: 0,
                last_contact: None,
                peer_has: 0,
            }),
            queue,
            changed: Notify::new(),
            clock: Mutex::new(None),
        }
    }

    pub fn info(&self) -> ReplicaInfo {
        lock(&self.info).clone()
    }

    pub fn state(&self) -> LinkState {
        lock(&self.status).state
    }

    /// The link's state, and which period in that state this is.
    pub fn state_and_generation(&self) -> (LinkState, u64) {
        let s = lock(&self.status);
        (s.state, s.generation)
    }

    /// How long the link has been in its current state.
    pub fn state_age(&self) -> Duration {
        lock(&self.status).since.elapsed()
    }

    pub fn set_state(&self, state: LinkState) {
        self.change_state(state, |_, _| true);
    }

    /// Moves to `state` if the current state and its period (generation)
    /// pass `allowed` (checked and changed under one lock); returns the
    /// state it had and the period it is in now. A retired link stays
    /// retired whatever is asked.
    fn change_state(
        &self,
        state: LinkState,
        allowed: impl FnOnce(LinkState, u64) -> bool,
    ) -> (LinkState, u64) {
        let mut s = lock(&self.status);
        let was = s.state;
        if was != state && was != LinkState::Retired && allowed(was, s.generation) {
            tracing::info!(peer = self.id, from = ?was, to = ?state, "link state");
            if was == LinkState::Live && state == LinkState::Dead {
                crate::metrics::record_peer_down(self.id);
            }
            s.state = state;
            s.since = Instant::now();
            s.generation += 1;
            self.changed.notify_waiters();
        }
        (was, s.generation)
    }

    /// This replica's own introduction to the peer has begun syncing: the
    /// link is `Syncing` unless it is already live -- the peer's
    /// introduction to us completed meanwhile, which leaves both sides
    /// holding each other's entries, so ours is redundant and relays go on
    /// under their deadline. Returns the period to end if ours fails
    /// ([`Link::introduction_failed`]); `None` if the link is live.
    pub fn introduction_syncing(&self) -> Option<u64> {
        let (was, period) = self.change_state(LinkState::Syncing, |s, _| s != LinkState::Live);
        (was != LinkState::Live && was != LinkState::Retired).then_some(period)
    }

    /// This replica's own introduction failed: the link is dead -- unless
    /// its state changed since [`Link::introduction_syncing`] (the peer's
    /// introduction made it live), which a failure of ours does not undo.
    pub fn introduction_failed(&self, period: Option<u64>) {
        if let Some(period) = period {
            self.change_state(LinkState::Dead, |_, generation| generation == period);
        }
    }

    /// Resolves at the next change of state (create it before checking the
    /// state, so no change falls in between).
    pub fn state_changed(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.changed.notified()
    }

    /// Marks the link live, knowing the peer holds this replica's log up to
    /// `peer_has`.
    pub fn set_live(&self, peer_has: u64) {
        self.touch();
        self.advance(peer_has);
        self.set_state(LinkState::Live);
    }

    pub fn peer_has(&self) -> u64 {
        lock(&self.status).peer_has
    }

    /// Records that the peer holds our log up to `seq` (never moves back:
    /// what a peer holds is durable there).
    pub fn advance(&self, seq: u64) {
        let mut s = lock(&self.status);
        s.peer_has = s.peer_has.max(seq);
    }

    pub fn touch(&self) {
        lock(&self.status).last_contact = Some(Instant::now());
    }

    pub fn last_contact(&self) -> Option<Duration> {
        lock(&self.status).last_contact.map(|t| t.elapsed())
    }

    /// Records a comparison of the peer's clock with ours
    /// (`super::clocks`).
    pub fn record_clock(&self, reading: Reading) {
        *lock(&self.clock) = Some(reading);
    }

    /// The latest comparison of the peer's clock with ours, as of `now`
    /// (corrected for any step of our clock since), if it was taken at most
    /// `max_age` before.
    pub fn clock(&self, max_age: Duration, now: &Moment) -> Option<Reading> {
        lock(&self.clock)
            .filter(|r| now.mono.saturating_duration_since(r.taken.mono) <= max_age)
            .map(|r| r.as_of(now))
    }

    /// Queues a batch for relaying. If the link dies first (or its task has
    /// stopped), the batch is settled without this peer.
    pub fn enqueue(&self, item: RelayItem) {
        // A link whose task has stopped drops the item, which settles it.
        let _ = self.queue.send(item);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "replica id {id} is already used by another replica (instance {existing}, at {addr}); \
         every replica needs its own id, and a replica that lost its data must rejoin under a new one"
    )]
    IdClash {
        id: u32,
        existing: String,
        addr: String,
    },
    #[error(
        "this replica (id {id}) has been retired from its cluster by an operator and may not \
         serve again; to add a replica, start one with a new id and an empty data directory"
    )]
    Retired { id: u32 },
    /// A peer holds more of this replica's own writes than its data does.
    #[error("{0}")]
    RolledBack(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// Why a replica cannot be retired.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error("a replica cannot retire itself; ask one of its peers")]
    Itself,
    #[error("replica {0} is not part of this cluster")]
    Unknown(u32),
    #[error(
        "replica {0} is running and connected to this replica; stop it for good first \
         (retiring a running replica would cut off writes it alone holds)"
    )]
    Running(u32),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

pub struct Cluster {
    pub me: ReplicaInfo,
    pub store: Arc<Store>,
    pub writer: Writer,
    pub settings: Settings,
    pub dialer: Dialer,
    links: Mutex<BTreeMap<u32, Arc<Link>>>,
    started: watch::Sender<bool>,
    /// Set once start-up sync is done and the client API is served.
    pub serving: AtomicBool,
    /// Whether this replica's clock agrees with the cluster's, as last
    /// checked (`super::clocks`).
    pub clock: Arc<ClockAgreement>,
    /// Why this replica must stop, once it has learnt it must: a peer says
    /// it has been retired, or shows that its data was rolled back.
    halt: watch::Sender<Option<String>>,
}

const PEER_KEY_PREFIX: &str = "peer/";

impl Cluster {
    /// The cluster as remembered in the store. Link tasks start idle; they
    /// run once [`Cluster::startup`] is done.
    pub fn new(
        me: ReplicaInfo,
        store: Arc<Store>,
        writer: Writer,
        settings: Settings,
        dialer: Dialer,
        clock: Arc<ClockAgreement>,
    ) -> Result<Arc<Self>, ClusterError> {
        let cluster = Arc::new(Self {
            me,
            store,
            writer,
            clock,
            settings,
            dialer,
            links: Mutex::new(BTreeMap::new()),
            started: watch::channel(false).0,
            serving: AtomicBool::new(false),
            halt: watch::channel(None).0,
        });
        for (_, bytes) in cluster.store.meta_scan(PEER_KEY_PREFIX)? {
            let info = ReplicaInfo::decode(bytes.as_slice())
                .map_err(|e| StorageError::Corrupt(format!("peer record: {e}")))?;
            cluster.add_peer(info)?;
        }
        Ok(cluster)
    }

    /// The origin this replica logs its own entries under in this run
    /// (`crate::origin`): what its relays carry and its peers' cutoffs of it
    /// are about.
    pub fn origin(&self) -> u32 {
        self.writer.origin()
    }

    pub fn link(&self, id: u32) -> Option<Arc<Link>> {
        lock(&self.links).get(&id).cloned()
    }

    pub fn links(&self) -> Vec<Arc<Link>> {
        lock(&self.links).values().cloned().collect()
    }

    /// Links to peers currently live.
    pub fn live_links(&self) -> Vec<Arc<Link>> {
        lock(&self.links)
            .values()
            .filter(|l| l.state() == LinkState::Live)
            .cloned()
            .collect()
    }

    /// Whether replica `id` has been retired from the cluster.
    pub fn is_retired(&self, id: u32) -> bool {
        self.link(id)
            .is_some_and(|l| l.state() == LinkState::Retired)
    }

    /// Removes replica `id` from the cluster for good. If `check_dead`, it
    /// must not be live or syncing here (a replica that is still running
    /// must be stopped first). Returns whether it was news. Peers learn of
    /// it from this replica's network list (heartbeats, introductions); the
    /// caller also tells the live ones at once.
    pub fn retire(&self, id: u32, check_dead: bool) -> Result<bool, RetireError> {
        if id == self.me.id {
            return Err(RetireError::Itself);
        }
        let link = self.link(id).ok_or(RetireError::Unknown(id))?;
        // Checked and changed at once: an introduction cannot make it live
        // in between.
        let running = |s| matches!(s, LinkState::Live | LinkState::Syncing);
        let (was, _) = link.change_state(LinkState::Retired, |s, _| !(check_dead && running(s)));
        if check_dead && running(was) {
            return Err(RetireError::Running(id));
        }
        let mut info = link.info();
        if info.retired {
            return Ok(false);
        }
        info.retired = true;
        // If this write is lost to a crash, the peers told meanwhile hand
        // the retirement back in their network lists.
        self.store.meta_put(&peer_key(id), &info.encode_to_vec())?;
        *lock(&link.info) = info;
        tracing::warn!(peer = id, "replica retired from the cluster by an operator");
        Ok(true)
    }

    /// This replica must stop serving (retired, or its data rolled back):
    /// `why` is what it says as it stops.
    pub fn halt(&self, why: String) {
        self.halt.send_if_modified(|h| {
            let news = h.is_none();
            if news {
                *h = Some(why);
            }
            news
        });
    }

    /// Resolves, with the reason, once this replica has learnt it must stop.
    pub async fn wait_halted(&self) -> String {
        let mut rx = self.halt.subscribe();
        let why = rx
            .wait_for(|h| h.is_some())
            .await
            .ok()
            .and_then(|h| h.clone());
        match why {
            Some(why) => why,
            // The cluster is gone (never while the server runs).
            None => std::future::pending().await,
        }
    }

    /// Every replica known here, this one included (retired ones too, so
    /// the retirement travels with the list).
    pub fn network(&self) -> Vec<ReplicaInfo> {
        let mut all = vec![self.me.clone()];
        all.extend(self.links().iter().map(|l| l.info()));
        all
    }

    /// Learns of (or updates) a replica. Refuses a second replica claiming an
    /// id that belongs to another instance. Returns `None` for this replica.
    pub fn add_peer(
        self: &Arc<Self>,
        info: ReplicaInfo,
    ) -> Result<Option<Arc<Link>>, ClusterError> {
        if info.id == self.me.id {
            if info.instance != self.me.instance {
                return Err(ClusterError::IdClash {
                    id: info.id,
                    existing: self.me.instance.clone(),
                    addr: self.me.replication_addr.clone(),
                });
            }
            return Ok(None);
        }
        let mut links = lock(&self.links);
        if let Some(link) = links.get(&info.id) {
            let mut known = lock(&link.info);
            if known.instance != info.instance {
                return Err(ClusterError::IdClash {
                    id: info.id,
                    existing: known.instance.clone(),
                    addr: known.replication_addr.clone(),
                });
            }
            // A retirement is final: later news of the replica is stale.
            if known.retired {
                return Ok(Some(link.clone()));
            }
            if info.retired {
                tracing::warn!(
                    peer = info.id,
                    "replica retired from the cluster (learnt from a peer)"
                );
                self.store
                    .meta_put(&peer_key(info.id), &info.encode_to_vec())?;
                *known = info;
                drop(known);
                link.set_state(LinkState::Retired);
                return Ok(Some(link.clone()));
            }
            // Only the addresses make a move. `log_format` describes the
            // running build and travels second-hand in network lists, where
            // a peer's stored copy may be older than the peer: it is checked
            // on what the peer itself sends (`service::sender`, the Hello),
            // never on gossip.
            if (&known.client_url, &known.replication_addr)
                != (&info.client_url, &info.replication_addr)
            {
                tracing::info!(peer = info.id, addr = %info.replication_addr, "peer moved");
                self.store
                    .meta_put(&peer_key(info.id), &info.encode_to_vec())?;
                *known = info;
            }
            return Ok(Some(link.clone()));
        }
        self.store
            .meta_put(&peer_key(info.id), &info.encode_to_vec())?;
        tracing::info!(peer = info.id, addr = %info.replication_addr, "new peer");
        let (tx, rx) = mpsc::unbounded_channel();
        let state = if info.retired {
            LinkState::Retired
        } else {
            LinkState::Dead
        };
        let link = Arc::new(Link::new(info, state, tx));
        links.insert(link.id, link.clone());
        tokio::spawn(link::run(self.clone(), link.clone(), rx));
        Ok(Some(link))
    }

    pub fn client(&self, addr: &str) -> Result<PeerClient, IntroError> {
        self.dialer
            .client(addr)
            .map_err(|e| IntroError::Unreachable(e.to_string()))
    }

    /// Resolves once start-up is done (link tasks wait for it).
    pub async fn wait_started(&self) {
        let mut rx = self.started.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The start-up sequence: introduce ourselves to one peer (from `join`,
    /// else from the remembered network) to get the network state and the
    /// backlog, then to every other replica (near-empty syncs), then let the
    /// link tasks run. Peers that cannot be reached are left dead: their
    /// links keep trying. Only an id clash is fatal.
    pub async fn startup(self: &Arc<Self>, join: &[String]) -> Result<(), ClusterError> {
        let mut candidates: Vec<(String, Option<u32>)> =
            join.iter().map(|a| (a.clone(), None)).collect();
        for link in self.links() {
            let addr = link.info().replication_addr;
            if !join.contains(&addr) && link.state() != LinkState::Retired {
                candidates.push((addr, Some(link.id)));
            }
        }
        let mut first = None;
        for (addr, expect) in &candidates {
            match introduce(self, addr, *expect).await {
                Ok(peer) => {
                    tracing::info!(peer = peer.id, %addr, "synced from first peer");
                    first = Some(peer.id);
                    break;
                }
                Err(IntroError::Clash(e)) => return Err(e),
                Err(IntroError::Retired) => return Err(self.retired_error()),
                Err(IntroError::RolledBack(why)) => return Err(ClusterError::RolledBack(why)),
                Err(e) => tracing::warn!(%addr, error = %e, "introduction failed"),
            }
        }
        if first.is_none() && !candidates.is_empty() {
            tracing::warn!(
                "no peer reachable: serving with local state; peers will sync when they return"
            );
        }
        // Join addresses not tried yet (their ids are unknown until they
        // answer), then every replica the network state names.
        for (addr, _) in &candidates {
            let known = self
                .links()
                .iter()
                .any(|l| l.info().replication_addr == *addr);
            if known || first.is_none() {
                continue;
            }
            match introduce(self, addr, None).await {
                Ok(peer) => tracing::info!(peer = peer.id, %addr, "synced"),
                Err(IntroError::Clash(e)) => return Err(e),
                Err(IntroError::Retired) => return Err(self.retired_error()),
                Err(IntroError::RolledBack(why)) => return Err(ClusterError::RolledBack(why)),
                Err(e) => tracing::warn!(%addr, error = %e, "introduction failed"),
            }
        }
        for link in self.links() {
            if Some(link.id) == first
                || matches!(link.state(), LinkState::Live | LinkState::Retired)
            {
                continue;
            }
            let addr = link.info().replication_addr;
            match introduce(self, &addr, Some(link.id)).await {
                Ok(_) => tracing::info!(peer = link.id, "synced"),
                Err(IntroError::Clash(e)) => return Err(e),
                Err(IntroError::Retired) => return Err(self.retired_error()),
                Err(IntroError::RolledBack(why)) => return Err(ClusterError::RolledBack(why)),
                Err(e) => {
                    tracing::warn!(peer = link.id, error = %e, "peer unreachable at start-up")
                }
            }
        }
        // A peer's introduction to this replica may have shown meanwhile
        // that its data was rolled back (`service.rs`): then it must not
        // begin to serve.
        if let Some(why) = self.halt.borrow().clone() {
            return Err(ClusterError::RolledBack(why));
        }
        // Before the first client: a replica that starts with a wrong clock
        // never stamps an entry with it.
        super::clocks::check(self);
        tokio::spawn(super::clocks::watch(self.clone()));
        tokio::spawn(super::repair::run(self.clone()));
        self.started.send_replace(true);
        Ok(())
    }

    /// What a replica that learnt it was retired stops with.
    pub fn retired_error(&self) -> ClusterError {
        ClusterError::Retired { id: self.me.id }
    }
}

fn peer_key(id: u32) -> String {
    format!("{PEER_KEY_PREFIX}{id:010}")
}

impl ServerList for Cluster {
    fn servers(&self) -> Vec<Server> {
        let mut out = vec![Server {
            id: self.me.id,
            url: self.me.client_url.clone(),
            // Refusing clients over its clock: down, as far as they go.
            live: self.clock.refusal().is_none(),
        }];
        out.extend(
            self.links()
                .iter()
                .filter(|l| l.state() != LinkState::Retired)
                .map(|l| Server {
                    id: l.id,
                    url: l.info().client_url,
                    live: l.state() == LinkState::Live,
                }),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(state: LinkState) -> Link {
        let info = ReplicaInfo {
            id: 2,
            ..Default::default()
        };
        Link::new(info, state, mpsc::unbounded_channel().0)
    }

    #[test]
    fn our_introduction_failing_writes_the_peer_off() {
        let l = link(LinkState::Dead);
        let period = l.introduction_syncing();
        assert!(period.is_some());
        assert_eq!(l.state(), LinkState::Syncing);
        l.introduction_failed(period);
        assert_eq!(l.state(), LinkState::Dead);
    }

    #[test]
    fn a_link_the_peers_introduction_made_live_stays_live() {
        // The peer's completes while ours syncs; then ours fails.
        let l = link(LinkState::Dead);
        let period = l.introduction_syncing();
        l.set_live(7);
        l.introduction_failed(period);
        assert_eq!(l.state(), LinkState::Live);
        assert_eq!(l.peer_has(), 7);
        // The peer's had begun first (the link was syncing), completes
        // after our Hello; ours fails.
        let l = link(LinkState::Dead);
        l.set_state(LinkState::Syncing);
        let period = l.introduction_syncing();
        assert!(period.is_some());
        l.set_live(3);
        l.introduction_failed(period);
        assert_eq!(l.state(), LinkState::Live);
        // Ours gets its Hello after the peer's completed: the link stays
        // live, generation and all, whatever ours does next.
        let l = link(LinkState::Dead);
        l.set_live(5);
        let before = l.state_and_generation();
        let period = l.introduction_syncing();
        assert_eq!(period, None);
        assert_eq!(l.state_and_generation(), before);
        l.introduction_failed(period);
        assert_eq!(l.state_and_generation(), before);
        l.set_live(9);
        assert_eq!(l.state_and_generation(), before);
        assert_eq!(l.peer_has(), 9);
    }

    #[test]
    fn a_retired_link_stays_retired() {
        let l = link(LinkState::Retired);
        let period = l.introduction_syncing();
        assert_eq!(period, None);
        l.introduction_failed(period);
        l.set_live(1);
        assert_eq!(l.state(), LinkState::Retired);
    }
}
