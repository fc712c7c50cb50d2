//! The replicated state machine.
//!
//! State is what applying the log gives. This module is that function and
//! nothing else: [`apply::apply`] turns (state, entry) into the next state,
//! [`command::check`] decides whether a client's command may become an
//! entry, [`query`] reads the state. All of it works on the [`kv`] interface
//! -- no fjall, no clock, no network -- so it is deterministic and is tested
//! in memory (`tests.rs`), while `storage` and `writer` at the edge supply
//! durability, time and ids.
//!
//! See `apply` for why replicas that apply the same entries in different
//! orders still end in the same state.

pub mod apply;
pub mod command;
pub mod digest;
pub mod keys;
pub mod kv;
pub mod query;
pub mod records;

#[cfg(test)]
mod tests;

pub use apply::{Change, Effects, apply};
pub use command::{Checked, Command, CommandError, check};
pub use kv::{KvRead, KvWrite, MemoryKv, Overlay, StorageError};
