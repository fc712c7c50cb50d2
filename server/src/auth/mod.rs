//! Who is calling: sessions (signed tokens valid on every replica) and
//! passwords (argon2id hashes), plus the cluster secret both derive from,
//! and the limits on what a caller may try (password guesses, sign-ups).

mod buckets;
pub mod password;
pub mod secret;
pub mod session;
pub mod signup_limit;
pub mod throttle;

pub use password::Passwords;
pub use secret::ClusterSecret;
pub use session::{Claims, SessionError, Sessions};
pub use signup_limit::SignupLimit;
pub use throttle::Throttle;
