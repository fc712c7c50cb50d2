//! The chat service's browser client: a Leptos app rendered in the browser
//! (CSR), talking gRPC-web to the replicas through the shared client core.
//!
//! `app` holds the state and the actions, `ui` the screens, `net` the
//! browser's transport, timer, liveness probe and session storage, `days`
//! the day separators of a conversation. Built
//! with trunk from `index.html` at the repository root; natively this crate
//! compiles to nothing, so workspace-wide native builds stay fast.

#[cfg(target_arch = "wasm32")]
mod app;
// Pure, so also built (and tested) natively.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod days;
#[cfg(target_arch = "wasm32")]
mod net;
#[cfg(target_arch = "wasm32")]
mod ui;

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(ui::Root);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("chat-web is a browser app: build it with `trunk build --release` (see README.md)");
    std::process::exit(2);
}
