//! Leaky buckets by key: how many of something a key has used lately.
//!
//! A bucket holds `limit` uses and drains at `limit` per `window`, so a key
//! may use a burst of `limit` at once, then one per `window / limit`. The
//! password-guessing throttle (per account name and per address) and the
//! sign-up limit (per address) are both made of these.
//!
//! Memory is bounded: a drained bucket is the same as none and is swept
//! away, and at [`MAX_TRACKED`] keys a new key goes untracked rather than
//! evicting the ones in use. No clock inside: callers pass `now`.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most keys one set of buckets tracks at once.
pub const MAX_TRACKED: usize = 100_000;

/// What one caller controls, as a bucket key: an IPv4 address, or an IPv6
/// address's /64 network. An IPv6 host is normally given a whole /64 and
/// can pick any address in it, so counting single IPv6 addresses would give
/// it 2^64 buckets. An IPv4 client reaching a dual-stack listener shows up
/// as `::ffff:a.b.c.d`; it is the same IPv4 address either way.
pub(crate) fn caller(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(
            || IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            IpAddr::V4,
        ),
        v4 => v4,
    }
}

/// Leaky buckets by key. A bucket's `used` tries drain at `limit` per
/// `window`; a try is allowed while `used + 1 <= limit`.
pub(crate) struct Buckets<K> {
    limit: f64,
    /// Seconds for one try to drain.
    per_try: f64,
    map: HashMap<K, Bucket>,
    last_sweep: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Bucket {
    used: f64,
    at: Instant,
}

impl Bucket {
    fn used_at(&self, now: Instant, per_try: f64) -> f64 {
        let drained = now.saturating_duration_since(self.at).as_secs_f64() / per_try;
        (self.used - drained).max(0.0)
    }
}

impl<K: Hash + Eq> Buckets<K> {
    /// `None` for a limit of 0 (no throttling).
    pub(crate) fn new(limit: u32, window: Duration) -> Option<Self> {
        let limit = f64::from(limit);
        (limit > 0.0).then(|| Self {
            limit,
            per_try: window.as_secs_f64().max(1e-3) / limit,
            map: HashMap::new(),
            last_sweep: None,
        })
    }

    /// How long until `key` may try again, if it may not now.
    pub(crate) fn wait<Q>(&self, key: &Q, now: Instant) -> Option<Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let used = self.map.get(key)?.used_at(now, self.per_try);
        let excess = used + 1.0 - self.limit;
        // Saturates: a window of u64::MAX seconds is a valid flag.
        (excess > 1e-9)
            .then(|| Duration::try_from_secs_f64(excess * self.per_try).unwrap_or(Duration::MAX))
    }

    /// Takes a try; whether that left the bucket empty.
    pub(crate) fn take(&mut self, key: K, now: Instant) -> bool {
        if !self.map.contains_key(&key) && self.map.len() >= MAX_TRACKED {
            self.sweep(now);
            if self.map.len() >= MAX_TRACKED {
                return false;
            }
        }
        let per_try = self.per_try;
        let bucket = self.map.entry(key).or_insert(Bucket { used: 0.0, at: now });
        *bucket = Bucket {
            used: bucket.used_at(now, per_try) + 1.0,
            at: now,
        };
        bucket.used + 1.0 - self.limit > 1e-9
    }

    pub(crate) fn give_back(&mut self, key: &K, now: Instant) {
        let per_try = self.per_try;
        if let Some(bucket) = self.map.get_mut(key) {
            *bucket = Bucket {
                used: (bucket.used_at(now, per_try) - 1.0).max(0.0),
                at: now,
            };
        }
    }

    pub(crate) fn forget<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key);
    }

    /// Drops drained buckets; at most once a second, so a full table does
    /// not turn every new key into a scan.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let per_try = self.per_try;
        self.map.retain(|_, b| b.used_at(now, per_try) > 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn an_ipv6_caller_is_its_slash_64_and_an_ipv4_one_its_address() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        let v6 = |s: &str| caller(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()));
        assert_eq!(v6("2001:db8:1:2:aaaa::1"), v6("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(caller(IpAddr::V6(v4.to_ipv6_mapped())), IpAddr::V4(v4));
        assert_ne!(
            caller(IpAddr::V4(v4)),
            caller(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8)))
        );
        assert_eq!(
            caller(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn a_full_table_lets_new_names_through_and_keeps_the_ones_guessed_at() {
        let mut b: Buckets<u32> = Buckets::new(1, 10 * MINUTE).unwrap();
        let t0 = Instant::now();
        for k in 0..MAX_TRACKED as u32 {
            b.take(k, t0);
        }
        // Nothing has drained: the newcomer is not tracked, so not throttled.
        b.take(u32::MAX, t0);
        assert!(b.wait(&u32::MAX, t0).is_none());
        assert!(b.wait(&0, t0).is_some());
        // Once drained, the sweep makes room.
        let drained = t0 + 10 * MINUTE;
        b.take(u32::MAX, drained);
        assert_eq!(b.map.len(), 1);
        assert!(b.wait(&u32::MAX, drained).is_some());
    }
}
