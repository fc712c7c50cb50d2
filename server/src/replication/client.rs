//! Connections to peers' replication ports.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::auth::AddPeerKey;
use crate::proto::replication::replication_client::ReplicationClient;

pub type PeerClient = ReplicationClient<InterceptedService<Channel, AddPeerKey>>;

/// Largest replication message (a relay batch or a backlog chunk), encoded.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How to reach peers.
#[derive(Clone)]
pub struct Dialer {
    pub key: AddPeerKey,
    /// PEM CA to trust: set when the cluster runs TLS.
    pub tls_ca: Option<Vec<u8>>,
    /// How long a silent connection may stay open before it is declared
    /// dead (HTTP/2 keepalive), so a hung peer fails calls instead of
    /// stalling them.
    pub dead_after: Duration,
}

impl Dialer {
    /// A lazily connecting client for the peer at `addr` (host:port).
    pub fn client(&self, addr: &str) -> Result<PeerClient, tonic::transport::Error> {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_millis(500))
            .keep_alive_timeout(self.dead_after)
            .keep_alive_while_idle(true);
        if let Some(ca) = &self.tls_ca {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))?;
        }
        Ok(
            ReplicationClient::with_interceptor(endpoint.connect_lazy(), self.key.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
    }
}
