//! Password-guessing throttle: a few wrong passwords, then one try per
//! interval.
//!
//! Argon2 makes each guess cost the attacker tens of milliseconds of *our*
//! CPU, but nothing else would stop a script from guessing one account's
//! password around the clock, or from trying common passwords across many
//! accounts from one address. So every password check (Login, and the
//! confirmation DeleteAccount asks for) first takes a token from two leaky
//! buckets: one for the account name, one for the caller's IP address (an
//! IPv6 caller's /64: `buckets::caller`). Each
//! bucket holds `limit` tries and refills at `limit` per `window`: a user who
//! mistypes a few times never notices, a guesser gets one try per
//! `window / limit` once the bucket is empty, and is told when to come back.
//!
//! The token is taken *before* the (slow) check, so concurrent guesses
//! cannot all slip past a nearly empty bucket, and a throttled guess costs
//! no hashing. A correct password gives the tokens back: the account's
//! bucket is refilled (its earlier failures were most likely its owner's
//! typos), the address's gets its one token back (so one valid account does
//! not buy an address unlimited guesses at others).
//!
//! The name is throttled whether or not such an account exists, so being
//! throttled reveals nothing. Buckets live in this replica's memory only:
//! with N replicas a guesser gets N times the rate, and a restart forgets
//! them (docs/limits.md). Memory is bounded: a full bucket is forgotten, and
//! at [`MAX_TRACKED`] names (or addresses) new ones go unthrottled on that
//! side rather than evicting the ones being guessed at.
//!
//! No clock inside: callers pass `now`, so the arithmetic is tested exactly.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use super::buckets::MAX_TRACKED;
use super::buckets::{Buckets, caller};

/// How many password tries a bucket holds, and how fast it refills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tries per account name, refilled over `window`.
    pub per_account: u32,
    /// Tries per client IP address, refilled over `window`.
    pub per_address: u32,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_account: 10,
            per_address: 100,
            window: Duration::from_secs(600),
        }
    }
}

/// A password check refused before it was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    #[error("too many wrong passwords for this account; try again in {}", crate::duration_words::at_least(*.0))]
    Account(Duration),
    #[error("too many wrong passwords from your address; try again in {}", crate::duration_words::at_least(*.0))]
    Address(Duration),
}

impl Throttled {
    pub fn retry_after(&self) -> Duration {
        match self {
            Throttled::Account(d) | Throttled::Address(d) => *d,
        }
    }
}

pub struct Throttle {
    inner: Mutex<Inner>,
}

/// `None`: that side is not throttled (a limit of 0).
struct Inner {
    accounts: Option<Buckets<String>>,
    addresses: Option<Buckets<IpAddr>>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Self {
            inner: Mutex::new(Inner {
                accounts: Buckets::new(limits.per_account, limits.window),
                addresses: Buckets::new(limits.per_address, limits.window),
            }),
        }
    }

    /// Takes a try for the (normalized) account name and, if known, the
    /// caller's address -- both or neither. Says which buckets this try
    /// emptied, for the log.
    pub fn begin(
        &self,
        account: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<Emptied, Throttled> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner {
            accounts,
            addresses,
        } = &mut *inner;
        let address = address.map(caller).filter(|_| addresses.is_some());
        if let (Some(ip), Some(b)) = (address, addresses.as_ref())
            && let Some(d) = b.wait(&ip, now)
        {
            return Err(Throttled::Address(d));
        }
        if let Some(d) = accounts.as_ref().and_then(|b| b.wait(account, now)) {
            return Err(Throttled::Account(d));
        }
        let mut emptied = Emptied::default();
        if let Some(b) = accounts {
            emptied.account = b.take(account.to_owned(), now);
        }
        if let (Some(ip), Some(b)) = (address, addresses) {
            emptied.address = b.take(ip, now);
        }
        Ok(emptied)
    }

    /// The password was right: give back what [`Throttle::begin`] took, and
    /// forgive the account's earlier failures.
    pub fn succeeded(&self, account: &str, address: Option<IpAddr>, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = &mut inner.accounts {
            b.forget(account);
        }
        if let (Some(ip), Some(b)) = (address, &mut inner.addresses) {
            b.give_back(&caller(ip), now);
        }
    }
}

/// Buckets a try left empty: the next try there will be refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Emptied {
    pub account: bool,
    pub address: bool,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn limits(per_account: u32, per_address: u32) -> Limits {
        Limits {
            per_account,
            per_address,
            window: 10 * MINUTE,
        }
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    #[test]
    fn an_account_gets_its_limit_then_one_try_per_interval() {
        let t = Throttle::new(limits(3, 100));
        let t0 = Instant::now();
        for _ in 0..3 {
            t.begin("ann", ip(1), t0).unwrap();
        }
        // Empty: the next try drains in window / limit = 200 s.
        assert_eq!(
            t.begin("ann", ip(1), t0),
            Err(Throttled::Account(Duration::from_secs(200)))
        );
        let later = t0 + Duration::from_secs(150);
        assert_eq!(
            t.begin("ann", ip(2), later).unwrap_err().retry_after(),
            Duration::from_secs(50),
            "another address does not help"
        );
        let refilled = t0 + Duration::from_secs(200);
        t.begin("ann", ip(1), refilled).unwrap();
        assert!(
            t.begin("ann", ip(1), refilled).is_err(),
            "one try, not more"
        );
        // Other accounts are untouched.
        t.begin("bob", ip(1), t0).unwrap();
    }

    #[test]
    fn refused_tries_cost_nothing_and_a_full_window_refills_everything() {
        let t = Throttle::new(limits(2, 100));
        let t0 = Instant::now();
        t.begin("ann", None, t0).unwrap();
        t.begin("ann", None, t0).unwrap();
        for s in 0..50 {
            assert!(t.begin("ann", None, t0 + Duration::from_secs(s)).is_err());
        }
        let after = t0 + 10 * MINUTE;
        t.begin("ann", None, after).unwrap();
        t.begin("ann", None, after).unwrap();
        assert!(t.begin("ann", None, after).is_err());
    }

    #[test]
    fn the_right_password_forgives_the_account_but_not_the_address() {
        let t = Throttle::new(limits(3, 4));
        let t0 = Instant::now();
        t.begin("ann", ip(1), t0).unwrap();
        t.begin("ann", ip(1), t0).unwrap();
        t.begin("ann", ip(1), t0).unwrap();
        t.succeeded("ann", ip(1), t0);
        // The account's bucket is full again ...
        t.begin("ann", ip(2), t0).unwrap();
        t.begin("ann", ip(2), t0).unwrap();
        // ... the address got back only the successful try: 2 of 4 used.
        t.begin("bob", ip(1), t0).unwrap();
        t.begin("cat", ip(1), t0).unwrap();
        assert_eq!(
            t.begin("dan", ip(1), t0),
            Err(Throttled::Address(Duration::from_secs(150)))
        );
    }

    #[test]
    fn an_address_guessing_across_accounts_is_stopped() {
        let t = Throttle::new(limits(1, 5));
        let t0 = Instant::now();
        for n in 0..5 {
            t.begin(&format!("user{n}"), ip(7), t0).unwrap();
        }
        assert!(matches!(
            t.begin("user5", ip(7), t0),
            Err(Throttled::Address(_))
        ));
        // A refused try takes nothing from the account it named.
        t.begin("user5", ip(8), t0).unwrap();
        // The same address over IPv6-mapped IPv4 is the same address.
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert!(t.begin("user6", Some(mapped), t0).is_err());
        // A real IPv6 address is another one (its /64 is the caller).
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        t.begin("user6", Some(v6), t0).unwrap();
    }

    #[test]
    fn the_try_that_empties_a_bucket_says_so() {
        let t = Throttle::new(limits(2, 3));
        let t0 = Instant::now();
        assert_eq!(t.begin("ann", ip(1), t0), Ok(Emptied::default()));
        let emptied = t.begin("ann", ip(1), t0).unwrap();
        assert!(emptied.account && !emptied.address);
        let emptied = t.begin("bob", ip(1), t0).unwrap();
        assert!(!emptied.account && emptied.address);
    }

    #[test]
    fn a_limit_of_zero_turns_that_side_off() {
        let t = Throttle::new(limits(0, 2));
        let t0 = Instant::now();
        t.begin("ann", ip(1), t0).unwrap();
        t.begin("ann", ip(1), t0).unwrap();
        assert!(matches!(
            t.begin("ann", ip(1), t0),
            Err(Throttled::Address(_))
        ));
        for _ in 0..100 {
            t.begin("ann", None, t0).unwrap();
        }
        let t = Throttle::new(limits(1, 0));
        t.begin("ann", ip(1), t0).unwrap();
        t.begin("bob", ip(1), t0).unwrap();
        assert!(matches!(
            t.begin("ann", ip(1), t0),
            Err(Throttled::Account(_))
        ));
    }

    #[test]
    fn an_enormous_window_waits_forever_without_overflowing() {
        let t = Throttle::new(Limits {
            per_account: 1,
            per_address: 1,
            window: Duration::from_secs(u64::MAX),
        });
        let t0 = Instant::now();
        t.begin("ann", None, t0).unwrap();
        let refused = t.begin("ann", None, t0).unwrap_err();
        assert_eq!(refused.retry_after(), Duration::MAX);
        let hours = u64::MAX.div_ceil(3600);
        assert!(
            refused
                .to_string()
                .ends_with(&format!("try again in {hours} h"))
        );
    }

    #[test]
    fn the_message_rounds_the_wait_up_to_whole_seconds() {
        let e = Throttled::Account(Duration::from_millis(1500));
        assert_eq!(
            e.to_string(),
            "too many wrong passwords for this account; try again in 2 s"
        );
    }
}
