//! A replica of the replicated chat service.
//!
//! The code is layered from a pure core outwards:
//!
//! * [`state`]: the replicated state machine: apply a log entry to the
//!   materialized state, check a client command, answer queries. Pure and
//!   deterministic; works on an abstract ordered key-value store.
//! * [`entry`], [`origin`], [`ids`], [`hlc`]: what a log entry is, whose
//!   it is, how ids are derived, the hybrid logical clock that stamps
//!   entries.
//! * [`storage`]: the log and the materialized state in fjall
//!   ([`memtable_reaper`] keeps fjall's memtable frees off its read lock;
//!   [`background_priority`] keeps flushes and compactions out of the
//!   writer's way).
//! * [`writer`]: the single writer: turns commands into entries, applies
//!   them, group-commits them durably, publishes changes
//!   ([`disk_watchdog`] stops the replica if its disk hangs).
//! * [`api`]: the client API (gRPC + gRPC-web), one file per call.
//! * [`replication`]: relaying entries to peers, introductions, liveness.
//! * [`auth`]: sessions (JWT) and passwords (argon2id).
//! * [`server`]: wiring: listeners, TLS, health, reflection, shutdown.
//! * [`metrics`]: Prometheus metrics for operators (`--metrics-addr`).
//! * [`admin`]: the operator commands (`status`, `retire`, `verify`).
//!
//! `ARCHITECTURE.md` at the repository root walks a request through these.

pub mod admin;
pub mod api;
pub mod auth;
pub mod background_priority;
pub mod cache;
pub mod clock_agreement;
pub mod config;
pub mod disk_watchdog;
pub mod duration_words;
pub mod entry;
pub mod events;
pub mod hlc;
pub mod ids;
pub mod memtable_reaper;
pub mod metrics;
pub mod origin;
pub mod replication;
pub mod server;
pub mod state;

pub mod storage;
pub mod writer;

/// Code generated from `proto/chat/replication/v1/replication.proto`; the
/// client API lives in `chat_shared::proto`.
pub mod proto {
    pub mod replication {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("chat.replication.v1");
    }
}
