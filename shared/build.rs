//! Generates the client API types and stubs from `proto/` with a pure-Rust
//! protobuf compiler (protox), so building needs no `protoc` on the machine.
//! With the `server` feature it also writes the encoded descriptor set that
//! the server hands to gRPC reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../proto";
    let file = "chat/v1/chat.proto";
    println!("cargo:rerun-if-changed={proto_root}/{file}");
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    let fds = protox::compile([file], [proto_root])?;
    if server {
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
        std::fs::write(out.join("chat_v1_descriptor.bin"), fds.encode_to_vec())?;
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(server)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .codec_path("crate::codec::ChatCodec")
        .compile_fds(fds)?;
    Ok(())
}
