//! Whether this replica's wall clock agrees with the cluster's.
//!
//! ## Why
//!
//! Wall-clock time enters the system in two places: the HLC stamp of every
//! entry a replica accepts (every message's time, and so the order of a
//! conversation), and the expiry of session tokens. The HLC tolerates skew
//! as far as *order* goes -- it moves past every stamp it sees -- but that is
//! exactly how one replica whose clock runs ahead (NTP misconfigured, a VM
//! resumed with a wrong clock) would drag every replica with it: each entry
//! it stamps an hour ahead moves every peer's clock an hour ahead, so every
//! later message, whichever replica takes it, shows a time an hour off, and
//! stays so (a restart resumes above the newest stamp in the log) until
//! real time catches up. A clock far behind accepts tokens long expired;
//! one far ahead refuses every token as expired, signing users out.
//!
//! ## What
//!
//! Replicas compare clocks on the exchanges they already make: every
//! heartbeat answer, relay answer and introduction's `Hello` carries the
//! answering replica's wall clock. A replica whose clock is off by more than
//! `--max-clock-offset-ms` from **most of the cluster** refuses clients
//! (`UNAVAILABLE`, so they fail over; only `ListServers` is answered, with
//! this replica shown down) until it agrees again. It keeps replicating:
//! it applies its peers' entries, stamped by their clocks, and stamps none
//! of its own.
//!
//! ## The estimate
//!
//! A caller that sent at local time t0 and had the answer at t1, carrying
//! the peer's clock reading c, knows the peer read its clock somewhere in
//! [t0, t1]: its offset is c - (t0 + t1) / 2, give or take (t1 - t0) / 2.
//! Only a peer *certainly* off (|offset| - error > max) counts as
//! disagreeing.
//!
//! ## Who is wrong
//!
//! A disagreement between two clocks does not say which one is wrong. A
//! replica stands down when a **strict majority** of the replicas it has
//! recent readings from (itself included) have clocks that agree with each
//! other (within the maximum) and certainly disagree with its own: with
//! three replicas, the odd one out stands down and the two that agree go on.
//! With two replicas live, or when no majority agrees on a time, no one can
//! tell who is right, and nobody stands down (a warning is logged):
//! availability wins over a dispute that affects displayed times.
//!
//! [`verdict`] is the pure decision; [`ClockAgreement`] holds its latest
//! outcome for the client API.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One comparison with a peer's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// How far the peer's clock is ahead of ours (negative: behind), ms.
    pub offset_ms: i64,
    /// How far off the estimate may be, ms (half the round trip).
    pub error_ms: i64,
}

impl Reading {
    /// The reading from one exchange: the peer answered with its clock at
    /// `peer_clock_ms`; we had its answer at `answered_ms` on our clock,
    /// `round_trip` after sending.
    pub fn from_exchange(peer_clock_ms: u64, answered_ms: u64, round_trip: Duration) -> Self {
        let rtt = i64::try_from(round_trip.as_millis()).unwrap_or(i64::MAX);
        // The midpoint of the exchange on our clock, in ms with one more
        // bit of precision kept by doubling.
        let sent_ms = i128::from(answered_ms) - i128::from(rtt);
        let twice_mid = sent_ms + i128::from(answered_ms);
        let twice_offset = 2 * i128::from(peer_clock_ms) - twice_mid;
        Self {
            offset_ms: clamp(twice_offset / 2),
            error_ms: rtt / 2 + rtt % 2,
        }
    }

    /// Whether the peer's clock is certainly more than `max_ms` away.
    fn certainly_off(&self, max_ms: i64) -> bool {
        self.offset_ms.abs().saturating_sub(self.error_ms) > max_ms
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// What the readings say about our clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No peer's clock is certainly off from ours.
    Agrees,
    /// Some peers' clocks are certainly off, but not a majority that agrees
    /// on another time: we go on (the odd ones out are those peers, or no
    /// one can tell).
    Disputed { off: Vec<(u32, i64)> },
    /// A strict majority agrees on a time certainly off from ours, by
    /// `offset_ms` (the median of their offsets): we stand down.
    Off { offset_ms: i64, peers: Vec<u32> },
}

/// Decides from the latest reading of each peer heard from recently.
/// `max_ms` 0 means never stand down.
pub fn verdict(max_ms: i64, readings: &[(u32, Reading)]) -> Verdict {
    let off: Vec<(u32, Reading)> = readings
        .iter()
        .filter(|(_, r)| r.certainly_off(max_ms))
        .copied()
        .collect();
    if off.is_empty() {
        return Verdict::Agrees;
    }
    // Ourselves plus every peer with a reading.
    let voters = readings.len() + 1;
    if max_ms > 0 {
        // The largest group of off clocks within `max_ms` of each other:
        // on a line, a window [o, o + max] starting at one of them.
        let mut best: Vec<(u32, i64)> = Vec::new();
        for (_, start) in &off {
            let group: Vec<(u32, i64)> = off
                .iter()
                .filter(|(_, r)| {
                    (start.offset_ms..=start.offset_ms + max_ms).contains(&r.offset_ms)
                })
                .map(|(id, r)| (*id, r.offset_ms))
                .collect();
            if group.len() > best.len() {
                best = group;
            }
        }
        if best.len() * 2 > voters {
            let mut offsets: Vec<i64> = best.iter().map(|(_, o)| *o).collect();
            offsets.sort_unstable();
            let mut peers: Vec<u32> = best.iter().map(|(id, _)| *id).collect();
            peers.sort_unstable();
            return Verdict::Off {
                offset_ms: offsets[offsets.len() / 2],
                peers,
            };
        }
    }
    let mut off: Vec<(u32, i64)> = off.iter().map(|(id, r)| (*id, r.offset_ms)).collect();
    off.sort_unstable();
    Verdict::Disputed { off }
}

/// The latest verdict, as the client API sees it.
pub struct ClockAgreement {
    max_ms: i64,
    off: AtomicBool,
    last: Mutex<Verdict>,
}

impl ClockAgreement {
    /// `max_offset`: how far clocks may disagree; zero never stands down.
    pub fn new(max_offset: Duration) -> Self {
        Self {
            max_ms: i64::try_from(max_offset.as_millis()).unwrap_or(i64::MAX),
            off: AtomicBool::new(false),
            last: Mutex::new(Verdict::Agrees),
        }
    }

    /// Decides from `readings` (each peer's latest recent one), logs what
    /// changed, and returns whether this replica now stands down.
    pub fn update(&self, readings: &[(u32, Reading)]) -> bool {
        let now = verdict(self.max_ms, readings);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::discriminant(&now) != std::mem::discriminant(&*last)
            || changed_peers(&now, &last)
        {
            match &now {
                Verdict::Agrees => tracing::info!("this replica's clock agrees with its peers'"),
                Verdict::Disputed { off } => tracing::warn!(
                    max_offset_ms = self.max_ms,
                    ?off,
                    "these peers' clocks are off from ours (ms ahead, negative: behind), but \
                     no majority agrees on another time, so this replica goes on serving; \
                     check the clocks (NTP)"
                ),
                Verdict::Off { offset_ms, peers } => tracing::error!(
                    offset_ms,
                    ?peers,
                    max_offset_ms = self.max_ms,
                    "this replica's clock disagrees with most of the cluster's; it refuses \
                     clients until its clock is corrected (NTP)"
                ),
            }
        }
        let off = matches!(now, Verdict::Off { .. });
        *last = now;
        self.off.store(off, Ordering::Relaxed);
        off
    }

    /// Why this replica refuses clients, if it does.
    pub fn refusal(&self) -> Option<String> {
        if !self.off.load(Ordering::Relaxed) {
            return None;
        }
        match &*self.last.lock().unwrap_or_else(|p| p.into_inner()) {
            Verdict::Off { offset_ms, peers } => Some(describe(*offset_ms, peers)),
            _ => None,
        }
    }
}

fn changed_peers(a: &Verdict, b: &Verdict) -> bool {
    let ids = |v: &Verdict| match v {
        Verdict::Agrees => Vec::new(),
        Verdict::Disputed { off } => off.iter().map(|(id, _)| *id).collect(),
        Verdict::Off { peers, .. } => peers.clone(),
    };
    ids(a) != ids(b)
}

/// The refusal in words: the majority's clock relative to ours.
fn describe(offset_ms: i64, peers: &[u32]) -> String {
    let (how, by) = if offset_ms > 0 {
        ("behind", offset_ms)
    } else {
        ("ahead of", -offset_ms)
    };
    let peers: Vec<String> = peers.iter().map(u32::to_string).collect();
    format!(
        "this server's clock is {} {how} the other servers' (replicas {}), so it serves no \
         requests until its clock is corrected; try another server",
        human(by),
        peers.join(", ")
    )
}

fn human(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..120_000 => format!("{} s", ms / 1_000),
        120_000..3_600_000 => format!("{} min", ms / 60_000),
        _ if ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(offset_ms: i64) -> Reading {
        Reading {
            offset_ms,
            error_ms: 1,
        }
    }

    #[test]
    fn a_reading_is_the_offset_from_the_exchanges_midpoint() {
        // Sent at 1_000, answered at 1_010 on our clock; the peer said 61_005.
        let got = Reading::from_exchange(61_005, 1_010, Duration::from_millis(10));
        assert_eq!(
            got,
            Reading {
                offset_ms: 60_000,
                error_ms: 5
            }
        );
        let behind = Reading::from_exchange(0, 3_600_000, Duration::from_millis(3));
        assert_eq!(behind.offset_ms, -3_599_998);
        assert_eq!(behind.error_ms, 2);
        // Absurd inputs do not overflow.
        let huge = Reading::from_exchange(u64::MAX, 0, Duration::MAX);
        assert!(huge.offset_ms > 0);
    }

    #[test]
    fn the_odd_one_out_of_three_stands_down_and_the_others_go_on() {
        // We are an hour ahead: both peers read an hour behind us.
        let ahead = verdict(5_000, &[(1, r(-3_600_000)), (2, r(-3_600_400))]);
        assert_eq!(
            ahead,
            Verdict::Off {
                offset_ms: -3_600_000,
                peers: vec![1, 2]
            }
        );
        assert!(describe(-3_600_000, &[1, 2]).contains("1 h ahead of"));
        assert!(describe(5_400_000, &[1, 2]).contains("1.5 h behind"));
        assert!(describe(-600_000, &[3, 4]).contains("10 min ahead of"));
        // One of the others: only the skewed peer is off.
        let other = verdict(5_000, &[(1, r(120)), (3, r(3_600_000))]);
        assert_eq!(
            other,
            Verdict::Disputed {
                off: vec![(3, 3_600_000)]
            }
        );
        // Within the maximum, all agree.
        assert_eq!(
            verdict(5_000, &[(1, r(4_000)), (2, r(-4_000))]),
            Verdict::Agrees
        );
    }

    #[test]
    fn nobody_stands_down_without_a_majority_that_agrees() {
        // Two replicas: who is wrong cannot be told.
        assert!(matches!(
            verdict(5_000, &[(2, r(3_600_000))]),
            Verdict::Disputed { .. }
        ));
        // Three clocks all apart: the two peers disagree with each other too.
        assert!(matches!(
            verdict(5_000, &[(1, r(3_600_000)), (2, r(-3_600_000))]),
            Verdict::Disputed { .. }
        ));
        // Five replicas, two peers off together: a minority.
        let minority = [(1, r(0)), (2, r(10)), (3, r(60_000)), (4, r(61_000))];
        assert!(matches!(
            verdict(5_000, &minority),
            Verdict::Disputed { .. }
        ));
        // Three of five off together: a majority.
        let majority = [(1, r(0)), (2, r(60_000)), (3, r(61_000)), (4, r(59_000))];
        assert_eq!(
            verdict(5_000, &majority),
            Verdict::Off {
                offset_ms: 60_000,
                peers: vec![2, 3, 4]
            }
        );
        // Zero: never stand down.
        assert!(matches!(
            verdict(0, &[(1, r(-3_600_000)), (2, r(-3_600_000))]),
            Verdict::Disputed { .. }
        ));
    }

    #[test]
    fn an_uncertain_reading_does_not_count_against_us() {
        // 6 s off, but the round trip took 4 s: maybe only 4 s off.
        let slow = Reading {
            offset_ms: 6_000,
            error_ms: 2_000,
        };
        assert_eq!(verdict(5_000, &[(1, slow), (2, slow)]), Verdict::Agrees);
    }

    #[test]
    fn the_refusal_lasts_while_the_verdict_does() {
        let clock = ClockAgreement::new(Duration::from_secs(5));
        assert!(clock.refusal().is_none());
        assert!(clock.update(&[(1, r(7_200_000)), (2, r(7_200_000))]));
        let why = clock.refusal().expect("refusing");
        assert!(
            why.contains("2 h behind") && why.contains("replicas 1, 2"),
            "{why}"
        );
        assert!(!clock.update(&[(1, r(10)), (2, r(-10))]));
        assert!(clock.refusal().is_none());
        // No readings at all (alone): agrees.
        assert!(!clock.update(&[]));
    }
}
