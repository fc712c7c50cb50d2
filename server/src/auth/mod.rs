//! Who is calling: sessions (signed tokens valid on every replica) and
//! passwords (argon2id hashes), plus the cluster secret both derive from.

pub mod password;
pub mod secret;
pub mod session;
pub mod throttle;

pub use password::Passwords;
pub use secret::ClusterSecret;
pub use session::{Claims, SessionError, Sessions};
pub use throttle::Throttle;
