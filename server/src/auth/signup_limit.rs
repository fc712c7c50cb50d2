//! Sign-up limit: a few new accounts per address, then one per interval.
//!
//! Creating an account costs this replica an argon2 hash (tens of
//! milliseconds of a core) and every replica a logged entry forever; a
//! script creating accounts in a loop would fill the directory with junk
//! and the disks with log, and could register every name someone might
//! want. So each `CreateAccount` that gets as far as hashing takes one
//! sign-up from the caller's leaky bucket -- its IPv4 address, or its IPv6
//! address's /64 (`buckets::caller`): `limit` at once,
//! refilled at `limit` per `window` (by default 20 an hour), after which
//! the caller is told how long to wait (`RESOURCE_EXHAUSTED`).
//!
//! What does not count: a request refused for bad input (nothing was
//! hashed), and a retry of a creation that already happened (the client
//! core retries with the same request id after a failover, and the user
//! must get their session, not a refusal). A name that turns out to be
//! taken does count: the hash was paid for, and probing names through
//! sign-ups should be as slow as signing up.
//!
//! Like the password throttle, the buckets live in this replica's memory
//! (with N replicas a script gets N times the rate, and a restart forgets
//! them), and behind a reverse proxy every caller has the proxy's address:
//! set the limit to 0 there and limit sign-ups in the proxy (docs/limits.md).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::buckets::{Buckets, caller};

/// A sign-up refused: this address has used its sign-ups; the next one is
/// allowed after the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many new accounts from your address; try again in {}", crate::duration_words::at_least(*.0))]
pub struct SignupsUsedUp(pub Duration);

pub struct SignupLimit {
    /// `None`: no limit (a limit of 0).
    addresses: Mutex<Option<Buckets<IpAddr>>>,
}

impl SignupLimit {
    /// `per_address` sign-ups, refilled over `window`; 0 turns the limit off.
    pub fn new(per_address: u32, window: Duration) -> Self {
        Self {
            addresses: Mutex::new(Buckets::new(per_address, window)),
        }
    }

    /// Takes a sign-up for `address` (callers of unknown address are not
    /// limited). `Ok(true)` if this one used the last, for the log.
    pub fn take(&self, address: Option<IpAddr>, now: Instant) -> Result<bool, SignupsUsedUp> {
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(buckets), Some(ip)) = (addresses.as_mut(), address.map(caller)) else {
            return Ok(false);
        };
        if let Some(wait) = buckets.wait(&ip, now) {
            return Err(SignupsUsedUp(wait));
        }
        Ok(buckets.take(ip, now))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)))
    }

    #[test]
    fn an_address_gets_its_limit_then_one_per_interval() {
        let limit = SignupLimit::new(3, HOUR);
        let t0 = Instant::now();
        assert_eq!(limit.take(ip(1), t0), Ok(false));
        assert_eq!(limit.take(ip(1), t0), Ok(false));
        assert_eq!(limit.take(ip(1), t0), Ok(true), "the last one says so");
        // Empty: one sign-up drains in an hour / 3 = 20 min.
        assert_eq!(
            limit.take(ip(1), t0),
            Err(SignupsUsedUp(Duration::from_secs(1200)))
        );
        // Refused tries cost nothing: the wait only shrinks.
        let later = t0 + Duration::from_secs(1000);
        assert_eq!(
            limit.take(ip(1), later),
            Err(SignupsUsedUp(Duration::from_secs(200)))
        );
        let refilled = t0 + Duration::from_secs(1200);
        limit.take(ip(1), refilled).unwrap();
        assert!(limit.take(ip(1), refilled).is_err(), "one, not more");
        // Other addresses are untouched, and so is a caller of unknown
        // address.
        limit.take(ip(2), t0).unwrap();
        for _ in 0..10 {
            limit.take(None, t0).unwrap();
        }
    }

    #[test]
    fn one_caller_is_one_bucket_however_it_shows_up() {
        let limit = SignupLimit::new(1, HOUR);
        let t0 = Instant::now();
        limit.take(ip(7), t0).unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped());
        assert!(limit.take(Some(mapped), t0).is_err());
        // An IPv6 host picks any address of its /64: all one caller.
        let v6 = |s: &str| Some(IpAddr::V6(s.parse().unwrap()));
        limit.take(v6("2001:db8:0:1::1"), t0).unwrap();
        assert!(limit.take(v6("2001:db8:0:1:dead:beef:0:2"), t0).is_err());
        limit.take(v6("2001:db8:0:2::1"), t0).unwrap();
    }

    #[test]
    fn a_limit_of_zero_is_no_limit() {
        let limit = SignupLimit::new(0, HOUR);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limit.take(ip(1), t0), Ok(false));
        }
    }

    #[test]
    fn the_message_says_how_long_to_wait() {
        assert_eq!(
            SignupsUsedUp(Duration::from_millis(179_001)).to_string(),
            "too many new accounts from your address; try again in 3 min"
        );
    }
}
