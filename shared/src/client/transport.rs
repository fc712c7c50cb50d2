//! What the client core needs from its platform: a way to reach a replica
//! by URL, and a way to wait.
//!
//! The core is the same code in a browser (gRPC-web over `fetch`, timers from
//! the event loop), in native tools and tests (tonic's HTTP/2 `Channel`,
//! tokio), and in unit tests (in-process fake replicas). Only these two
//! traits differ between them. Neither requires `Send`: browser futures are
//! not, and native futures stay `Send` when the concrete types are.

use std::future::Future;
use std::time::Duration;

use tonic::body::Body as RequestBody;
use tonic::client::GrpcService;
use tonic::codegen::{Body, Bytes, StdError};

use crate::proto::chat_client::ChatClient;

/// A gRPC service the generated [`ChatClient`] can drive: exactly the bounds
/// of `ChatClient`'s methods, gathered under one name.
pub trait ChatTransport:
    GrpcService<
        RequestBody,
        Error: Into<StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
    > + Clone
    + 'static
{
}

impl<T> ChatTransport for T where
    T: GrpcService<
            RequestBody,
            Error: Into<StdError>,
            ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
        > + Clone
        + 'static
{
}

/// Makes a gRPC service that talks to the replica at a base URL such as
/// `http://127.0.0.1:7001`. Must not block or do I/O: connections are made
/// on first use, and failures show up as transport errors of the calls.
pub trait Connector: 'static {
    type Transport: ChatTransport;

    fn connect(&self, url: &str) -> Result<Self::Transport, ConnectError>;

    /// A client for `url` (the generated stub over [`Self::connect`]).
    fn client(&self, url: &str) -> Result<ChatClient<Self::Transport>, ConnectError> {
        self.connect(url).map(ChatClient::new)
    }
}

/// A URL no client can be made for (malformed, unsupported scheme).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to {url}: {reason}")]
pub struct ConnectError {
    pub url: String,
    pub reason: String,
}

/// Sleeping, in whatever event loop the client runs in.
pub trait Timer: 'static {
    type Sleep: Future<Output = ()>;

    fn sleep(&self, duration: Duration) -> Self::Sleep;
}
