//! Origins: under which name a replica logs the entries it accepts.
//!
//! Each origin's entries are numbered 1, 2, 3... without gaps, and replicas
//! sync by per-origin cutoffs, so a sequence number must never be given to
//! two different entries. A replica relays a batch of its own entries to
//! its peers *while* it commits the batch itself (`writer`,
//! `replication::relay`): the client's answer waits for both, so nothing
//! acknowledged depends on it, but a crash during that local fdatasync can
//! leave the batch durable on a peer and missing from the replica's own log.
//! Numbering on from its own log after such a crash would reuse those
//! sequence numbers -- possibly while the peer holding them is unreachable.
//!
//! So an origin is a replica's *incarnation*: its id (1..=65535, the low 16
//! bits) plus 65536 for each unclean stop it has had. A replica keeps its
//! origin across clean stops (every batch it relayed is then durable in its
//! own log: `Store::mark_clean_stop`) and takes the next one after an
//! unclean stop, before it writes anything. The old origin's tail, if a peer
//! holds one, comes back by sync like any other origin's entries. Old data
//! needs no conversion: incarnation 0 is the id itself.

/// The replica an origin belongs to.
pub fn replica(origin: u32) -> u32 {
    origin & 0xFFFF
}

/// How many unclean stops the replica had had when it took this origin.
pub fn incarnation(origin: u32) -> u32 {
    origin >> 16
}

/// The origin to log under after an unclean stop; `None` once a replica id
/// has used up its 65 535 restarts after unclean stops.
pub fn next(origin: u32) -> Option<u32> {
    origin.checked_add(1 << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnation_zero_is_the_replica_id() {
        assert_eq!(replica(7), 7);
        assert_eq!(incarnation(7), 0);
        assert_eq!(replica(65_535), 65_535);
    }

    #[test]
    fn each_incarnation_keeps_the_replica_and_is_a_new_origin() {
        let mut origin = 3;
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..100 {
            assert_eq!(replica(origin), 3);
            assert_eq!(incarnation(origin), n);
            assert!(seen.insert(origin));
            origin = next(origin).unwrap();
        }
        assert_eq!(next((65_535 << 16) | 3), None);
        assert_eq!(next((65_534 << 16) | 3), Some((65_535 << 16) | 3));
    }
}
