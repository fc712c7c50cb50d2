//! Peer authentication on the replication port.
//!
//! Every replication call carries `authorization: Bearer <key>`, where the
//! key is derived from the cluster secret (so the secret itself never
//! travels, and the session-signing key is a different derivation). A call
//! without the right key is refused with UNAUTHENTICATED and logged. The key
//! is a bearer credential: on anything but a trusted network, run the
//! replication port over TLS so it cannot be sniffed.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::auth::ClusterSecret;

/// The bearer key peers present, as it appears in the header.
pub fn peer_key(secret: &ClusterSecret) -> String {
    format!(
        "Bearer {}",
        hex::encode(secret.derive("replication peer key v1"))
    )
}

/// Server side: admits only calls that carry the peer key.
#[derive(Clone)]
pub struct RequirePeerKey {
    expected: String,
}

impl RequirePeerKey {
    pub fn new(secret: &ClusterSecret) -> Self {
        Self {
            expected: peer_key(secret),
        }
    }
}

impl Interceptor for RequirePeerKey {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq::constant_time_eq(presented, self.expected.as_bytes()) {
            return Ok(request);
        }
        tracing::warn!(
            remote = ?request.remote_addr(),
            had_credentials = !presented.is_empty(),
            "rejected a replication call without valid peer credentials"
        );
        Err(Status::unauthenticated(
            "replication calls need the cluster's peer key",
        ))
    }
}

/// Client side: adds the peer key to every call.
#[derive(Clone)]
pub struct AddPeerKey {
    value: MetadataValue<tonic::metadata::Ascii>,
}

impl AddPeerKey {
    pub fn new(secret: &ClusterSecret) -> Self {
        Self {
            value: peer_key(secret).parse().expect("hex is valid metadata"),
        }
    }
}

impl Interceptor for AddPeerKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.value.clone());
        Ok(request)
    }
}
