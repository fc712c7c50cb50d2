//! Multi-master replication by log shipping.
//!
//! Any replica accepts a client's write. The writer logs and applies it
//! durably (`writer`) while [`relay`] sends it on, and the client's answer
//! waits until the entry is durable here and on every peer this replica
//! considers live, or the peer has failed and been marked dead
//! (**relay-or-fail**). Each peer has one [`link`] task that relays this
//! replica's entries to it in sequence order, batching whatever queued up
//! during the previous round trip, with a deadline.
//!
//! Replicas only ever ship *their own* entries on relays -- those of their
//! current origin (`crate::origin`: a replica takes a new one after an
//! unclean stop, since a crash mid-commit can leave its last relayed batch
//! on a peer and not in its own log); entries of other origins travel in
//! **introductions** ([`introduce`]): a replica that starts, or that a peer
//! had written off, sends its per-origin cutoffs and receives every entry it
//! lacks (then pushes what the peer lacks). Because applying
//! is idempotent and order-insensitive across origins (see `state::apply`),
//! repeated, overlapping or crossing syncs are harmless, and every replica
//! that has the same entries has the same state.
//!
//! Liveness ([`cluster`]): a failed or late relay or heartbeat marks a peer
//! dead. A replica refuses relays from peers it considers dead ("resync with
//! me"), which makes them introduce themselves again before relaying; dead
//! peers are retried every two heartbeat intervals, so a healed partition or
//! a restarted replica comes back without waiting for a write.
//!
//! Entries that reached only some replicas -- their origin cut off from
//! the others and then gone -- are forwarded between replicas that stay
//! live to each other by [`repair`], which no introduction would do.
//!
//! Membership only grows, except by an operator's [`retire`]: a replica
//! gone for good is marked retired, and that mark spreads with the network
//! lists until every replica has stopped relaying to it and refuses it.
//!
//! `docs/replication.md` describes the guarantees and the failure model.

pub mod auth;
mod backlog;
pub mod client;
mod clocks;
pub mod cluster;
mod introduce;
mod link;
pub mod relay;
mod repair;
mod retire;
pub mod service;
pub mod snapshot;

pub use cluster::{Cluster, ClusterError, LinkState, Settings};
pub use service::ReplicationService;
