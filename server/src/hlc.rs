//! Hybrid logical clock.
//!
//! Every log entry carries an HLC timestamp: wall-clock milliseconds in the
//! high 48 bits, a counter in the low 16. The clock never goes backwards --
//! not when the wall clock steps back, not across a restart (it resumes above
//! the newest timestamp in the log) -- and it moves past every timestamp it
//! observes from peers, so an entry accepted after another replica's entry
//! was applied here is stamped after it. That is what keeps a reply sorted
//! after the message it answers, even with skewed clocks.
//!
//! The clock does no I/O: the caller passes the wall-clock reading in.

const LOGICAL_BITS: u32 = 16;

#[derive(Debug, Clone)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    /// A clock that will only issue timestamps above `floor`.
    pub fn new(floor: u64) -> Self {
        Self { last: floor }
    }

    /// A fresh timestamp for a local event, at wall-clock time `wall_ms`.
    pub fn tick(&mut self, wall_ms: u64) -> u64 {
        // Saturating: a peer's entry stamped at the very end of time (a bug
        // or a broken clock elsewhere) must not wrap the clock back to the
        // start and stamp new entries before old ones; at the end, stamps
        // repeat and ids break the ties.
        self.last = self.last.saturating_add(1).max(wall_ms << LOGICAL_BITS);
        self.last
    }

    /// Moves the clock past a timestamp seen on an entry from elsewhere.
    pub fn observe(&mut self, remote: u64) {
        self.last = self.last.max(remote);
    }

    pub fn last(&self) -> u64 {
        self.last
    }
}

/// The wall-clock part of a timestamp, in milliseconds since the Unix epoch.
pub fn to_millis(hlc: u64) -> i64 {
    (hlc >> LOGICAL_BITS) as i64
}

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_at_the_end_of_time_does_not_wrap_the_clock() {
        let mut c = Hlc::new(0);
        c.observe(u64::MAX);
        assert_eq!(c.tick(1_000), u64::MAX);
        assert_eq!(c.tick(2_000), u64::MAX);
    }

    #[test]
    fn monotonic_when_wall_clock_steps_back() {
        let mut c = Hlc::new(0);
        let a = c.tick(1_000);
        let b = c.tick(900);
        let d = c.tick(900);
        assert!(a < b && b < d);
        assert_eq!(to_millis(d), 1_000);
        assert_eq!(to_millis(c.tick(2_000)), 2_000);
    }

    #[test]
    fn moves_past_observed_timestamps() {
        let mut c = Hlc::new(0);
        c.observe(5_000 << 16);
        assert!(c.tick(1_000) > 5_000 << 16);
        let restarted = Hlc::new(c.last()).tick(0);
        assert!(restarted > c.last());
    }
}
