//! The browser's side of the client core's platform traits, plus the two
//! things the browser does outside gRPC: probing replicas with plain HTTP
//! and remembering the session across page reloads.

use std::time::Duration;

use chat_shared::client::{Client, Config, ConnectError, Connector, Session, Timer};
use chat_shared::proto::Account;
use futures_util::future::{Either, select};
use gloo_timers::future::TimeoutFuture;
use tonic_web_wasm_client::Client as GrpcWeb;

/// gRPC-web over `fetch`, one stateless client per replica URL.
pub struct WebConnector;

impl Connector for WebConnector {
    type Transport = GrpcWeb;

    fn connect(&self, url: &str) -> Result<GrpcWeb, ConnectError> {
        Ok(GrpcWeb::new(url.to_string()))
    }
}

/// `setTimeout`, as a future.
pub struct BrowserTimer;

impl Timer for BrowserTimer {
    type Sleep = TimeoutFuture;

    fn sleep(&self, duration: Duration) -> TimeoutFuture {
        TimeoutFuture::new(duration.as_millis().min(u32::MAX as u128) as u32)
    }
}

pub type WebClient = Client<WebConnector, BrowserTimer>;

/// The client core, starting at the replica that served this page.
pub fn client() -> WebClient {
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default();
    Client::new(WebConnector, BrowserTimer, vec![origin], Config::default())
}

/// Whether the replica at `url` answers plain HTTP, and how fast (ms).
///
/// A `no-cors` GET of `/` resolves as soon as any HTTP answer arrives and
/// fails only when nothing answers: exactly "is the process up", without
/// needing CORS or a session. `no-store` so that a cached page never makes a
/// dead replica look alive.
pub async fn probe(url: &str) -> Option<u32> {
    let started = js_sys::Date::now();
    let request = gloo_net::http::Request::get(&format!("{url}/"))
        .mode(web_sys::RequestMode::NoCors)
        .cache(web_sys::RequestCache::NoStore)
        .send();
    let timeout = TimeoutFuture::new(2000);
    match select(Box::pin(request), timeout).await {
        Either::Left((Ok(_), _)) => Some((js_sys::Date::now() - started).max(0.0) as u32),
        _ => None,
    }
}

/// The session is kept in `sessionStorage`: it survives a reload of this tab
/// but not the tab, and other tabs can log in as someone else. It holds the
/// bearer token (valid for its lifetime on every replica) and the account's
/// public fields; never the password.
const SESSION_KEY: &str = "chat.session";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

pub fn save_session(session: Option<&Session>) {
    let Some(storage) = storage() else { return };
    match session {
        Some(s) => {
            let line = [
                s.token.as_str(),
                &s.expires_at_ms.to_string(),
                &s.account.id,
                &s.account.username,
            ]
            .join("\n");
            let _ = storage.set_item(SESSION_KEY, &line);
        }
        None => {
            let _ = storage.remove_item(SESSION_KEY);
        }
    }
}

/// The saved session, unless it has expired.
pub fn load_session() -> Option<Session> {
    let line = storage()?.get_item(SESSION_KEY).ok()??;
    let mut parts = line.split('\n');
    let token = parts.next()?.to_string();
    let expires_at_ms: i64 = parts.next()?.parse().ok()?;
    let id = parts.next()?.to_string();
    let username = parts.next()?.to_string();
    if (expires_at_ms as f64) <= js_sys::Date::now() {
        save_session(None);
        return None;
    }
    Some(Session {
        token,
        expires_at_ms,
        account: Account {
            id,
            username,
            ..Default::default()
        },
    })
}
