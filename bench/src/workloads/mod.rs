//! The named workloads, one file each.

pub mod send;
