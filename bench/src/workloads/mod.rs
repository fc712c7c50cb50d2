//! The named workloads, one file each.

pub mod catchup;
pub mod history;
pub mod live;
pub mod ping;
pub mod restart;
pub mod send;
pub mod verify;
