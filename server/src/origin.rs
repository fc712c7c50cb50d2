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
//!
//! All of this assumes a replica's data only ever moves forward. A data
//! directory put back from a backup or a disk snapshot while the cluster ran
//! on breaks that: its record of origins and its log are older than what the
//! peers hold of its own writes, so it could number new entries at
//! positions a peer already holds for others. [`rolled_back`] recognises
//! that from a peer's cutoffs, so the replica can refuse to serve instead
//! (docs/replication.md, "Backups").

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

/// Whether a peer's cutoffs show that this replica's data was rolled back:
/// the peer holds entries of a later incarnation of this replica than the
/// origin it logs under (`mine`), or -- checked only while `starting`,
/// before this run has logged anything -- more of `mine` than this replica
/// holds (`held`). Neither can happen while data only moves forward: a
/// replica takes a new origin before writing after an unclean stop, and
/// keeps one across a clean stop only when everything it relayed is in its
/// own log. (Once serving, a peer can briefly hold more of `mine` than the
/// local log -- a batch relayed while its local commit runs -- hence the
/// second test only at start-up.) Returns the peer's evidence: an origin of
/// this replica and how far the peer holds it.
pub fn rolled_back(
    mine: u32,
    held: u64,
    starting: bool,
    peer: impl IntoIterator<Item = (u32, u64)>,
) -> Option<(u32, u64)> {
    peer.into_iter().find(|&(origin, seq)| {
        replica(origin) == replica(mine)
            && (origin > mine || (starting && origin == mine && seq > held))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolled_back_replica_is_recognised_from_a_peers_cutoffs() {
        let one = 1;
        let two = next(one).unwrap();
        let three = next(two).unwrap();
        // (my origin, what I hold of it, starting, the peer's cutoffs) -> evidence
        type Case<'a> = (u32, u64, bool, &'a [(u32, u64)], Option<(u32, u64)>);
        let cases: &[Case] = &[
            // In step, or the peer behind: fine.
            (one, 10, true, &[(one, 10), (2, 5)], None),
            (one, 10, true, &[(one, 7)], None),
            // The tail of an earlier incarnation, lost in a crash: it syncs
            // back, nothing was reused.
            (two, 0, true, &[(one, 12)], None),
            (two, 3, false, &[(one, 12), (two, 3)], None),
            // Other replicas' origins never count.
            (one, 10, true, &[(next(2).unwrap(), 4), (2, 99)], None),
            // Restored from a clean stop's backup: the peer holds more of
            // the very origin this replica would number on.
            (one, 10, true, &[(one, 14)], Some((one, 14))),
            // ... which, once serving, may be a relay racing the local
            // commit, so only a later incarnation counts then.
            (one, 10, false, &[(one, 11)], None),
            // Restored from before two unclean stops: having taken the next
            // origin, it would log where the peer holds a later one.
            (
                two,
                0,
                true,
                &[(one, 9), (two, 4), (three, 2)],
                Some((two, 4)),
            ),
            (two, 7, false, &[(three, 2)], Some((three, 2))),
        ];
        for (n, &(mine, held, starting, peer, expected)) in cases.iter().enumerate() {
            assert_eq!(
                rolled_back(mine, held, starting, peer.iter().copied()),
                expected,
                "case {n}"
            );
        }
    }

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
