//! Reading the peers' clocks, and checking ours against them.
//!
//! Every answer a replica gives on the replication port that a caller
//! times -- a heartbeat's, a relay batch's, an introduction's `Hello` --
//! carries its wall clock; the caller turns it into a reading of
//! the peer's offset ([`reading`]) and keeps the latest on the link. A task
//! ([`watch`]) decides from the fresh readings of the live peers, every
//! heartbeat interval, whether this replica's clock is off from most of the
//! cluster's (`crate::clock_agreement` explains the rule and why). Live
//! links are never silent for long: idle ones heartbeat, busy ones relay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster::{Cluster, LinkState};
use crate::clock_agreement::{Moment, Reading};

/// Readings older than this are not counted: the peer's clock may have
/// moved since (and a peer that stopped answering is soon dead anyway).
const FRESH: Duration = Duration::from_secs(5);

/// The reading from an answer carrying `peer_clock_ms`, to a request sent
/// at `sent`. `None` from a peer that does not send its clock.
pub fn reading(peer_clock_ms: u64, sent: Instant) -> Option<Reading> {
    (peer_clock_ms != 0)
        .then(|| Reading::from_exchange(peer_clock_ms, Moment::now(), sent.elapsed()))
}

/// Checks this replica's clock against its live peers' latest fresh
/// readings; returns whether it now refuses clients.
pub fn check(cluster: &Cluster) -> bool {
    let now = Moment::now();
    let links = cluster.links();
    let has_peers = links.iter().any(|l| l.state() != LinkState::Retired);
    let readings: Vec<_> = links
        .iter()
        .filter(|l| l.state() == LinkState::Live)
        .filter_map(|l| Some((l.id, l.clock(FRESH, &now)?)))
        .collect();
    cluster.clock.update(&readings, now, has_peers)
}

/// Checks the clock every heartbeat interval, for good.
pub async fn watch(cluster: Arc<Cluster>) {
    let mut every = tokio::time::interval(cluster.settings.heartbeat);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        check(&cluster);
    }
}
