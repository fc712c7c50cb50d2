//! Support for browser end-to-end tests: a chromedriver process, headless
//! Chromium sessions driven over WebDriver (fantoccini), and the web bundle
//! the replicas serve.
//!
//! Nothing here is optional: a missing bundle, chromedriver or Chromium
//! fails the test with the command that provides it, rather than skipping
//! (a skipped browser test would pass without testing anything). Every
//! process is stopped when its handle drops, also when the test panics:
//! chromedriver runs in its own process group, and the whole group
//! (chromedriver and every Chromium it started) is killed and reaped.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::free_port;

/// How long a UI condition may take before the test fails.
pub const UI_TIMEOUT: Duration = Duration::from_secs(15);

/// The workspace root (where `dist/` and `index.html` live).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The cargo target directory this test runs from
/// (`target/<profile>/deps/<test>` → `target`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = target_dir().join("screenshots");
    std::fs::create_dir_all(&dir).expect("create screenshot directory");
    dir
}

/// The built web app (`dist/`, or `CHAT_WEB_DIST`), checked to be there.
pub fn web_bundle() -> PathBuf {
    let dist = std::env::var_os("CHAT_WEB_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("dist"));
    let index = dist.join("index.html");
    let has_wasm = std::fs::read_dir(&dist)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".wasm"))
        })
        .unwrap_or(false);
    assert!(
        index.exists() && has_wasm,
        "the web app bundle is missing from {}: build it with `trunk build --release` \
         (./scripts/test.sh installs trunk and builds it before the tests)",
        dist.display()
    );
    let built = modified(&index);
    let stale: Vec<PathBuf> = [
        "web/src",
        "web/style.css",
        "index.html",
        "shared/src/client",
    ]
    .iter()
    .flat_map(|p| files(&workspace_root().join(p)))
    .filter(|f| modified(f) > built)
    .collect();
    if !stale.is_empty() {
        eprintln!(
            "warning: {} is older than {:?}: rebuild with `trunk build --release`",
            dist.display(),
            stale
        );
    }
    dist
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn files(path: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(path) {
        Ok(entries) => entries.flatten().flat_map(|e| files(&e.path())).collect(),
        Err(_) if path.exists() => vec![path.to_path_buf()],
        Err(_) => vec![],
    }
}

/// `name` on PATH (or in /usr/bin, /usr/lib/chromium for Debian's layout).
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/bin", "/usr/lib/chromium"].map(PathBuf::from));
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

const INSTALL_HINT: &str = "install them with `apt-get install -y chromium chromium-driver` \
                            (./scripts/test.sh does)";

/// A chromedriver process on a free port, and the browsers it started.
pub struct Chromedriver {
    child: Option<Child>,
    url: String,
    chromium: PathBuf,
    profiles: tempfile::TempDir,
}

impl Chromedriver {
    pub async fn start() -> Self {
        let driver = std::env::var_os("CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| find_program(&["chromedriver"]))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| panic!("chromedriver not found: {INSTALL_HINT}"));
        let chromium = std::env::var_os("CHROME_BIN")
            .map(PathBuf::from)
            .or_else(|| find_program(&["chromium", "chromium-browser", "google-chrome"]))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| panic!("Chromium not found: {INSTALL_HINT}"));
        let profiles = tempfile::Builder::new()
            .prefix("chat-browser-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(profiles.path().join("chromedriver.log")).expect("log");
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            // Its own process group, so that Drop can kill every browser too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let this = Self {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            chromium,
            profiles,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        this
    }

    /// A new headless Chromium with a fresh profile, 1280×800. `name` labels
    /// its screenshots.
    pub async fn browser(&self, name: &str) -> Browser {
        let profile = self.profiles.path().join(name);
        std::fs::create_dir_all(&profile).expect("profile dir");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,800",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium.display().to_string(),
                "args": args,
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
        Browser {
            client,
            name: name.to_string(),
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One browser window (a WebDriver session).
pub struct Browser {
    pub client: Client,
    pub name: String,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("[{}] cannot open {url}: {e}", self.name));
    }

    /// Saves a PNG of the window as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Polls `check` until it returns `Some`, or fails the test after
    /// [`UI_TIMEOUT`] (saving a screenshot of the moment).
    pub async fn wait<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + UI_TIMEOUT;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                let shot = self
                    .screenshot(&format!("failed-{}", self.name))
                    .await
                    .display()
                    .to_string();
                let alerts = self.alerts().await;
                panic!(
                    "[{}] timed out after {UI_TIMEOUT:?} waiting for {what} \
                     (alerts on the page: {alerts:?}; screenshot: {shot})",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn try_find(&self, css: &str) -> Option<Element> {
        self.client.find(Locator::Css(css)).await.ok()
    }

    /// Waits for an element matching `css`.
    pub async fn find(&self, css: &str) -> Element {
        self.wait(&format!("`{css}`"), || self.try_find(css)).await
    }

    /// Waits until nothing matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        self.wait(&format!("`{css}` to disappear"), || async {
            (self.count(css).await == 0).then_some(())
        })
        .await
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("[{}] cannot click `{css}`: {e}", self.name));
    }

    /// Replaces the value of the input matching `css` with `text` (typed).
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element.clear().await.expect("clear input");
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("[{}] cannot type into `{css}`: {e}", self.name));
    }

    /// Types `text` into `css` and presses Enter.
    pub async fn fill_and_enter(&self, css: &str, text: &str) {
        self.fill(css, text).await;
        let element = self.find(css).await;
        element
            .send_keys(&char::from(fantoccini::key::Key::Enter).to_string())
            .await
            .expect("press Enter");
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_default()
    }

    /// Waits until the text of the element matching `css` contains `wanted`.
    pub async fn wait_text(&self, css: &str, wanted: &str) -> String {
        self.wait(&format!("`{css}` to say {wanted:?}"), || async {
            let element = self.try_find(css).await?;
            let text = element.text().await.ok()?;
            text.contains(wanted).then_some(text)
        })
        .await
    }

    /// Waits until attribute `name` of the element matching `css` is `wanted`.
    pub async fn wait_attr(&self, css: &str, name: &str, wanted: &str) {
        self.wait(&format!("`{css}` to have {name}={wanted:?}"), || async {
            let value = self.try_find(css).await?.attr(name).await.ok()??;
            (value == wanted).then_some(())
        })
        .await
    }

    /// Waits until the page's title (the browser tab's) is `wanted`.
    pub async fn wait_title(&self, wanted: &str) {
        self.wait(&format!("the title to be {wanted:?}"), || async {
            let title = self.client.title().await.ok()?;
            (title == wanted).then_some(())
        })
        .await
    }

    /// Runs a script in the page (`arguments[i]` are `args`).
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("[{}] script failed: {e}", self.name))
    }

    /// How many elements match `css` and have exactly the text `text`.
    pub async fn count_text(&self, css: &str, text: &str) -> usize {
        self.js(
            "return [...document.querySelectorAll(arguments[0])]\
                .filter(e => e.textContent === arguments[1]).length;",
            vec![json!(css), json!(text)],
        )
        .await
        .as_u64()
        .unwrap_or(0) as usize
    }

    /// The texts of every `role="alert"` element: the app's error messages.
    pub async fn alerts(&self) -> Vec<String> {
        let value = self
            .client
            .execute(
                "return [...document.querySelectorAll('[role=alert]')].map(e => e.textContent);",
                vec![],
            )
            .await
            .unwrap_or(Value::Null);
        value
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends the session (closes Chromium).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
