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
//! A clock can also *jump* between two checks: [`ClockAgreement`] catches
//! that on the call itself, against the monotonic clock. A replica whose
//! clock jumped, or that just started, is a suspect that must be agreed
//! with by most of the replicas it hears from before it serves -- which
//! settles the two-replica case for it.
//!
//! [`verdict`] is the pure decision; [`ClockAgreement`] holds its latest
//! outcome for the client API.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// A wall clock that moves more than this against the monotonic clock
/// between two checks has been *stepped* (by an operator, NTP, a resumed
/// VM); ordinary drift over a check's quarter of a second is microseconds.
const STEP_MS: i64 = 1_000;

/// A moment on both of this process's clocks: the wall clock, which can be
/// stepped, and the monotonic clock, which cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub wall_ms: u64,
    pub mono: Instant,
}

impl Moment {
    pub fn now() -> Self {
        Self {
            wall_ms: crate::hlc::wall_clock_ms(),
            mono: Instant::now(),
        }
    }

    /// How far the wall clock was stepped between `earlier` and this moment
    /// (positive: forward), in ms: its movement minus the time that passed.
    pub fn step_since(&self, earlier: &Moment) -> i64 {
        let wall = i128::from(self.wall_ms) - i128::from(earlier.wall_ms);
        let passed = self
            .mono
            .saturating_duration_since(earlier.mono)
            .as_millis();
        clamp(wall - i128::try_from(passed).unwrap_or(i128::MAX))
    }
}

/// One comparison with a peer's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// How far the peer's clock is ahead of ours (negative: behind), ms.
    pub offset_ms: i64,
    /// How far off the estimate may be, ms (half the round trip).
    pub error_ms: i64,
    /// When it was taken, on our clocks.
    pub taken: Moment,
}

impl Reading {
    /// The reading from one exchange: the peer answered with its clock at
    /// `peer_clock_ms`; we had its answer at `answered` on our clocks,
    /// `round_trip` after sending.
    pub fn from_exchange(peer_clock_ms: u64, answered: Moment, round_trip: Duration) -> Self {
        let rtt = i64::try_from(round_trip.as_millis()).unwrap_or(i64::MAX);
        // The midpoint of the exchange on our clock, in ms with one more
        // bit of precision kept by doubling.
        let sent_ms = i128::from(answered.wall_ms) - i128::from(rtt);
        let twice_mid = sent_ms + i128::from(answered.wall_ms);
        let twice_offset = 2 * i128::from(peer_clock_ms) - twice_mid;
        Self {
            offset_ms: clamp(twice_offset / 2),
            error_ms: rtt / 2 + rtt % 2,
            taken: answered,
        }
    }

    /// The reading as of `now`: if our wall clock has been stepped since it
    /// was taken, the peer's offset from it has moved the other way (the
    /// peer's clock, as far as we know, ran on).
    pub fn as_of(&self, now: &Moment) -> Reading {
        Reading {
            offset_ms: self.offset_ms.saturating_sub(now.step_since(&self.taken)),
            ..*self
        }
    }

    /// Whether the peer's clock is certainly more than `max_ms` away.
    fn certainly_off(&self, max_ms: i64) -> bool {
        self.offset_ms
            .saturating_abs()
            .saturating_sub(self.error_ms)
            > max_ms
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
/// `max_ms` 0 means checking is off: always `Agrees`.
pub fn verdict(max_ms: i64, readings: &[(u32, Reading)]) -> Verdict {
    if max_ms == 0 {
        return Verdict::Agrees; // checking is off
    }
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
    // The largest group of off clocks within `max_ms` of each other:
    // on a line, a window [o, o + max] starting at one of them.
    let mut best: Vec<(u32, i64)> = Vec::new();
    for (_, start) in &off {
        let group: Vec<(u32, i64)> = off
            .iter()
            .filter(|(_, r)| {
                (start.offset_ms..=start.offset_ms.saturating_add(max_ms)).contains(&r.offset_ms)
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
    let mut off: Vec<(u32, i64)> = off.iter().map(|(id, r)| (*id, r.offset_ms)).collect();
    off.sort_unstable();
    Verdict::Disputed { off }
}

/// The latest verdict, as the client API sees it, and the guard against a
/// wall clock stepped since.
///
/// Between two checks (a quarter of a second apart) the wall clock can be
/// stepped; a write stamped in between would carry the new time. So every
/// call also compares the wall clock's movement since the last check with
/// the monotonic clock's ([`Moment::step_since`]) and is refused if the
/// wall clock jumped.
///
/// And a replica whose clock has jumped, or that has just started, is a
/// *suspect*: it refuses until a check finds a strict majority of the
/// replicas it hears from (itself included) agreeing with its clock. When
/// only two replicas are live, a disagreement cannot say which clock is
/// wrong, but the one that just jumped or just came up is the one to doubt.
/// A suspect that hears from no peer waits for one -- unless it has just
/// started (a cluster must be able to restart after a total outage) or has
/// no peers at all.
pub struct ClockAgreement {
    max_ms: i64,
    off: AtomicBool,
    /// `CONFIRMED`, `STARTED` or `JUMPED`.
    suspect: AtomicU8,
    last: Mutex<Verdict>,
    /// When the last check was made (none yet: nothing to compare with).
    checked: Mutex<Option<Moment>>,
}

impl ClockAgreement {
    /// `max_offset`: how far clocks may disagree; zero never stands down.
    pub fn new(max_offset: Duration) -> Self {
        Self {
            max_ms: i64::try_from(max_offset.as_millis()).unwrap_or(i64::MAX),
            off: AtomicBool::new(false),
            suspect: AtomicU8::new(if max_offset.is_zero() {
                CONFIRMED
            } else {
                STARTED
            }),
            last: Mutex::new(Verdict::Agrees),
            checked: Mutex::new(None),
        }
    }

    /// Decides from `readings` (each live peer's latest recent one, as of
    /// `now`), logs what changed, and returns whether this replica now
    /// refuses clients. `has_peers`: whether the cluster has other replicas
    /// at all (a suspect with none to hear from cannot wait for them).
    pub fn update(&self, readings: &[(u32, Reading)], now: Moment, has_peers: bool) -> bool {
        let verdict = verdict(self.max_ms, readings);
        let step = self.step_since_check(&now);
        if self.max_ms > 0 && step.saturating_abs() > STEP_MS {
            let was = self.suspect.swap(JUMPED, Ordering::Relaxed);
            if was != JUMPED {
                tracing::warn!(
                    step_ms = step,
                    "this replica's wall clock was stepped; it refuses clients until most of \
                     the replicas it hears from agree with its clock"
                );
            }
        }
        let agreeing = 1 + readings
            .iter()
            .filter(|(_, r)| !r.certainly_off(self.max_ms))
            .count();
        let suspect = self.suspect.load(Ordering::Relaxed);
        let confirmed = if readings.is_empty() {
            !has_peers || suspect == STARTED
        } else {
            agreeing * 2 > readings.len() + 1
        };
        if confirmed && suspect != CONFIRMED {
            self.suspect.store(CONFIRMED, Ordering::Relaxed);
            if suspect == JUMPED {
                tracing::info!("after the step, this replica's clock agrees with its peers'");
            }
        }
        let mut last = lock(&self.last);
        if std::mem::discriminant(&verdict) != std::mem::discriminant(&*last)
            || changed_peers(&verdict, &last)
        {
            match &verdict {
                Verdict::Agrees => tracing::info!("this replica's clock agrees with its peers'"),
                Verdict::Disputed { off } => tracing::warn!(
                    max_offset_ms = self.max_ms,
                    ?off,
                    "these peers' clocks are off from ours (ms ahead, negative: behind), but \
                     no majority agrees on another time, so this replica goes on serving \
                     (unless its own clock just jumped, or it just started); check the \
                     clocks (NTP)"
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
        let off = matches!(verdict, Verdict::Off { .. });
        *last = verdict;
        self.off.store(off, Ordering::Relaxed);
        *lock(&self.checked) = Some(now);
        off || self.suspect.load(Ordering::Relaxed) != CONFIRMED
    }

    /// How far the wall clock was stepped since the last check.
    fn step_since_check(&self, now: &Moment) -> i64 {
        lock(&self.checked).map_or(0, |c| now.step_since(&c))
    }

    /// Why this replica refuses clients now, if it does.
    pub fn refusal(&self) -> Option<String> {
        self.refusal_at(&Moment::now())
    }

    /// Why this replica refuses clients at `now`, if it does.
    pub fn refusal_at(&self, now: &Moment) -> Option<String> {
        if self.off.load(Ordering::Relaxed)
            && let Verdict::Off { offset_ms, peers } = &*lock(&self.last)
        {
            return Some(describe(*offset_ms, peers));
        }
        if self.max_ms == 0 {
            return None;
        }
        let jumped = self.step_since_check(now).saturating_abs() > STEP_MS;
        match self.suspect.load(Ordering::Relaxed) {
            _ if jumped => Some(JUMPED_REFUSAL.to_string()),
            JUMPED => Some(JUMPED_REFUSAL.to_string()),
            STARTED if lock(&self.checked).is_some() => Some(
                "this server has just started and its clock disagrees with another server's, \
                 so it serves no requests until most of the servers it reaches agree with its \
                 clock; try another server"
                    .to_string(),
            ),
            // Not checked yet: nothing is served before the first check.
            _ => None,
        }
    }
}

const CONFIRMED: u8 = 0;
const STARTED: u8 = 1;
const JUMPED: u8 = 2;

const JUMPED_REFUSAL: &str = "this server's clock has just been changed, so it serves no \
     requests until it has compared it with the other servers' clocks; try another server";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        ("ahead of", offset_ms.saturating_neg())
    };
    let peers: Vec<String> = peers.iter().map(u32::to_string).collect();
    format!(
        "this server's clock is {} {how} the other servers' (replicas {}), so it serves no \
         requests until its clock is corrected; try another server",
        crate::duration_words::about(by),
        peers.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A moment `ms` after `base` on both clocks, with the wall clock
    /// stepped by `step_ms` besides.
    fn later(base: Moment, ms: u64, step_ms: i64) -> Moment {
        Moment {
            wall_ms: base.wall_ms.saturating_add_signed(ms as i64 + step_ms),
            mono: base.mono + Duration::from_millis(ms),
        }
    }

    fn base() -> Moment {
        Moment {
            wall_ms: 1_800_000_000_000,
            mono: Instant::now(),
        }
    }

    fn r(offset_ms: i64) -> Reading {
        Reading {
            offset_ms,
            error_ms: 1,
            taken: base(),
        }
    }

    #[test]
    fn a_reading_is_the_offset_from_the_exchanges_midpoint() {
        // Sent at 1_000, answered at 1_010 on our clock; the peer said 61_005.
        let at = |wall_ms| Moment {
            wall_ms,
            mono: Instant::now(),
        };
        let got = Reading::from_exchange(61_005, at(1_010), Duration::from_millis(10));
        assert_eq!((got.offset_ms, got.error_ms), (60_000, 5));
        let behind = Reading::from_exchange(0, at(3_600_000), Duration::from_millis(3));
        assert_eq!(behind.offset_ms, -3_599_998);
        assert_eq!(behind.error_ms, 2);
        // Absurd inputs do not overflow, and are decided on like any other.
        let huge = Reading::from_exchange(u64::MAX, at(0), Duration::MAX);
        assert!(huge.offset_ms > 0);
        let lowest = Reading::from_exchange(0, at(u64::MAX), Duration::ZERO);
        assert_eq!(lowest.offset_ms, i64::MIN);
        let fast = Reading::from_exchange(u64::MAX, at(0), Duration::ZERO);
        assert_eq!(fast.offset_ms, i64::MAX);
        assert!(matches!(
            verdict(5_000, &[(1, lowest), (2, lowest)]),
            Verdict::Off { .. }
        ));
        assert!(matches!(
            verdict(5_000, &[(1, fast), (2, fast)]),
            Verdict::Off { .. }
        ));
        assert!(describe(i64::MIN, &[1]).contains("ahead of"));
        assert!(describe(i64::MAX, &[1]).contains("behind"));
    }

    #[test]
    fn a_reading_follows_a_step_of_our_own_clock() {
        let t0 = base();
        let reading = Reading::from_exchange(t0.wall_ms + 20, t0, Duration::ZERO);
        assert_eq!(reading.offset_ms, 20);
        // Time passing changes nothing; our clock jumping an hour ahead
        // puts the peer an hour behind us.
        assert_eq!(reading.as_of(&later(t0, 4_000, 0)).offset_ms, 20);
        let jumped = reading.as_of(&later(t0, 4_000, 3_600_000));
        assert_eq!(jumped.offset_ms, 20 - 3_600_000);
        assert_eq!(later(t0, 250, -600_000).step_since(&t0), -600_000);
    }

    #[test]
    fn a_stepped_clock_refuses_at_once_and_until_most_agree() {
        let clock = ClockAgreement::new(Duration::from_secs(5));
        let t0 = base();
        // Two replicas live, clocks together.
        let peer = Reading::from_exchange(t0.wall_ms, t0, Duration::ZERO);
        assert!(!clock.update(&[(1, peer)], t0, true));
        assert!(clock.refusal_at(&later(t0, 200, 0)).is_none());
        // Our clock jumps an hour: refused at the next call, before any check.
        let t1 = later(t0, 200, 3_600_000);
        let why = clock.refusal_at(&t1).expect("refused at once");
        assert!(why.contains("just been changed"), "{why}");
        // The check: one peer against us -- no majority, but we jumped, so
        // we go on refusing.
        let t2 = later(t0, 250, 3_600_000);
        assert!(clock.update(&[(1, peer.as_of(&t2))], t2, true));
        assert!(clock.refusal_at(&later(t2, 1_000, 0)).is_some());
        // The peer, which did not jump, serves on.
        let other = ClockAgreement::new(Duration::from_secs(5));
        let before = Reading::from_exchange(t0.wall_ms, t0, Duration::ZERO);
        assert!(!other.update(&[(2, before)], t0, true));
        let seen = Reading::from_exchange(t2.wall_ms, t0, Duration::ZERO);
        assert!(!other.update(&[(2, seen)], later(t0, 250, 0), true));
        assert!(other.refusal_at(&later(t0, 300, 0)).is_none());
        // Put right: every peer agrees again, and we serve.
        let t3 = later(t2, 1_000, -3_600_000);
        assert!(!clock.update(&[(1, peer.as_of(&t3))], t3, true));
        assert!(clock.refusal_at(&later(t3, 10, 0)).is_none());
        // A jump while no peer is live: it waits for one to compare with;
        // a replica with no peers at all cannot, and serves.
        let t4 = later(t3, 1_000, 600_000);
        assert!(clock.update(&[], t4, true));
        assert!(clock.refusal_at(&later(t4, 10, 0)).is_some());
        let t5 = later(t4, 0, -600_000);
        assert!(!clock.update(&[(1, peer.as_of(&t5))], t5, true));
        let solo = ClockAgreement::new(Duration::from_secs(5));
        assert!(!solo.update(&[], t0, false));
        assert!(!solo.update(&[], t1, false));
        assert!(solo.refusal_at(&later(t1, 10, 0)).is_none());
        // Zero: never refuses, steps or not.
        let never = ClockAgreement::new(Duration::ZERO);
        assert!(!never.update(&[(1, peer)], t0, true));
        assert!(never.refusal_at(&t1).is_none());
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
        assert!(describe(599_999, &[1]).contains("10 min behind"));
        assert!(describe(-3_599_998, &[1]).contains("1 h ahead of"));
        assert!(describe(6_400, &[1]).contains("6 s behind"));
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
        // Zero: checking is off.
        assert_eq!(
            verdict(0, &[(1, r(-3_600_000)), (2, r(-3_600_000))]),
            Verdict::Agrees
        );
    }

    #[test]
    fn a_replica_just_started_serves_once_most_of_those_it_hears_agree() {
        let t0 = base();
        let agreeing = Reading::from_exchange(t0.wall_ms, t0, Duration::ZERO);
        let hour_ahead = Reading::from_exchange(t0.wall_ms + 3_600_000, t0, Duration::ZERO);
        // Nothing is served before the first check; after it, with every
        // peer agreeing, everything is.
        let fresh = || ClockAgreement::new(Duration::from_secs(5));
        let clock = fresh();
        assert!(clock.refusal_at(&t0).is_none());
        assert!(!clock.update(&[(1, agreeing), (2, agreeing)], t0, true));
        // One other replica live, and it disagrees: the one that just came
        // up is the one to doubt.
        let clock = fresh();
        assert!(clock.update(&[(1, hour_ahead)], t0, true));
        let why = clock.refusal_at(&later(t0, 10, 0)).expect("refused");
        assert!(why.contains("just started"), "{why}");
        // ... until they agree.
        assert!(!clock.update(&[(1, agreeing)], later(t0, 250, 0), true));
        assert!(clock.refusal_at(&later(t0, 260, 0)).is_none());
        // Two others, one of them off: the majority agrees with us.
        let clock = fresh();
        assert!(!clock.update(&[(1, agreeing), (2, hour_ahead)], t0, true));
        // Alone after a total outage: it serves.
        assert!(!fresh().update(&[], t0, true));
    }

    #[test]
    fn an_uncertain_reading_does_not_count_against_us() {
        // 6 s off, but the round trip took 4 s: maybe only 4 s off.
        let slow = Reading {
            error_ms: 2_000,
            ..r(6_000)
        };
        assert_eq!(verdict(5_000, &[(1, slow), (2, slow)]), Verdict::Agrees);
    }

    #[test]
    fn the_refusal_lasts_while_the_verdict_does() {
        let clock = ClockAgreement::new(Duration::from_secs(5));
        let t0 = base();
        assert!(clock.refusal_at(&t0).is_none());
        assert!(clock.update(&[(1, r(7_200_000)), (2, r(7_200_000))], t0, true));
        let why = clock.refusal_at(&later(t0, 10, 0)).expect("refusing");
        assert!(
            why.contains("2 h behind") && why.contains("replicas 1, 2"),
            "{why}"
        );
        assert!(!clock.update(&[(1, r(10)), (2, r(-10))], later(t0, 250, 0), true));
        assert!(clock.refusal_at(&later(t0, 260, 0)).is_none());
        // No readings at all (alone): agrees.
        assert!(!clock.update(&[], later(t0, 500, 0), true));
    }
}
