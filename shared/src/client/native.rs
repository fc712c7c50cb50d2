//! The client core over native gRPC (tonic's HTTP/2 `Channel`) on tokio:
//! for command-line tools and for tests that drive real replicas through
//! the same failover logic as the browser.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chat_shared::client::CallError> {
//! use chat_shared::client::{native, Config};
//! let client = native::client(vec!["http://127.0.0.1:7001".into()], Config::default());
//! client.login("ann", "ann-password").await?;
//! let mut events = client.subscribe();
//! let first = events.next().await?; // `Subscribed`, from whichever replica answered
//! # let _ = first; Ok(()) }
//! ```

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::{Client, Config, ConnectError, Connector, Timer};

/// Makes a lazily connecting `Channel` per replica URL.
#[derive(Debug, Clone)]
pub struct ChannelConnector {
    /// How long establishing a TCP connection may take before the call
    /// fails (and the client moves on).
    pub connect_timeout: Duration,
    /// While a call or the live stream is open, how often the connection is
    /// probed (an HTTP/2 ping), and how long an answer may take before the
    /// connection counts as dead. Without it a replica that hangs (or a
    /// network path that silently drops everything) would leave the live
    /// stream waiting forever: nothing else is sent on it. With it, the
    /// stream fails and the client moves to another replica.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for ChannelConnector {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
        }
    }
}

impl Connector for ChannelConnector {
    type Transport = Channel;

    fn connect(&self, url: &str) -> Result<Channel, ConnectError> {
        let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| ConnectError {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.keepalive_interval)
            .keep_alive_timeout(self.keepalive_timeout)
            .connect_lazy())
    }
}

/// tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

impl Timer for TokioTimer {
    type Sleep = tokio::time::Sleep;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }
}

/// A native client: `Channel` transport, tokio timer.
pub type NativeClient = Client<ChannelConnector, TokioTimer>;

/// A native client seeded with replica URLs (any one that answers will do:
/// the client fetches the full list from it).
pub fn client(seeds: Vec<String>, config: Config) -> NativeClient {
    Client::new(ChannelConnector::default(), TokioTimer, seeds, config)
}
