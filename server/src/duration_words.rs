//! Durations as a person would say them, in messages that users and
//! operators read ("try again in 20 min", "1 h ahead of the other
//! servers'").
//!
//! Two roundings, for two questions: how far apart two things are
//! ([`about`]: to the nearest unit, so a clock 3 599 998 ms off reads "1 h"),
//! and how long to wait ([`at_least`]: rounded up, never promising less
//! than the wait).

use std::time::Duration;

/// How far apart two things are, to the nearest unit: "350 ms", "6 s",
/// "10 min", "1 h", "1.5 h".
pub fn about(ms: i64) -> String {
    let secs = ms.saturating_add(500) / 1_000;
    let mins = ms.saturating_add(30_000) / 60_000;
    if ms < 1_000 {
        format!("{ms} ms")
    } else if secs < 120 {
        format!("{secs} s")
    } else if mins < 60 {
        format!("{mins} min")
    } else {
        let hours = format!("{:.1}", ms as f64 / 3_600_000.0);
        format!("{} h", hours.trim_end_matches(".0"))
    }
}

/// How long to wait, never shorter than `wait`: up to two minutes in
/// seconds, up to two hours in minutes, then in hours.
pub fn at_least(wait: Duration) -> String {
    let secs = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0));
    if secs < 120 {
        format!("{secs} s")
    } else if secs < 2 * 3600 {
        format!("{} min", secs.div_ceil(60))
    } else {
        format!("{} h", secs.div_ceil(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_rounds_to_the_nearest_unit() {
        assert_eq!(about(350), "350 ms");
        assert_eq!(about(6_400), "6 s");
        assert_eq!(about(119_499), "119 s");
        assert_eq!(about(599_999), "10 min");
        assert_eq!(about(3_599_998), "1 h");
        assert_eq!(about(5_400_000), "1.5 h");
        assert!(about(i64::MAX).ends_with(" h"));
    }

    #[test]
    fn at_least_is_never_shorter_than_the_wait() {
        let words = |ms| at_least(Duration::from_millis(ms));
        assert_eq!(words(1), "1 s");
        assert_eq!(words(1_500), "2 s");
        assert_eq!(words(119_000), "119 s");
        assert_eq!(words(119_001), "2 min");
        assert_eq!(words(1_200_000), "20 min");
        assert_eq!(words(1_200_001), "21 min");
        assert_eq!(words(7_199_000), "120 min");
        assert_eq!(words(7_200_000), "2 h");
        assert_eq!(words(7_200_001), "3 h");
        assert_eq!(
            at_least(Duration::MAX),
            format!("{} h", (u64::MAX).div_ceil(3600))
        );
    }
}
