//! What the chat server and every chat client must agree on, in one crate
//! that builds for native targets and for `wasm32-unknown-unknown`:
//!
//! * [`proto`]: the client API generated from `proto/chat/v1/chat.proto`
//!   (messages and client stubs; no transport, so any gRPC or gRPC-web
//!   channel can carry them);
//! * [`limits`]: every size limit of the service, in one place;
//! * [`validate`]: the input rules built on those limits, so a client can
//!   reject bad input before sending it and the server enforces the very
//!   same rules;
//! * [`wildcard`]: the account-search pattern matcher;
//! * [`conversation`]: a conversation's order, for clients that merge pages
//!   and live events.

#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod conversation;
pub mod limits;
pub mod validate;
pub mod wildcard;

/// Code generated from `proto/chat/v1/chat.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("chat.v1");

    /// Encoded `FileDescriptorSet` of the client API, for gRPC reflection.
    #[cfg(feature = "server")]
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/chat_v1_descriptor.bin"));
}
