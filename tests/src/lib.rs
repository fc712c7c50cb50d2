//! Support for end-to-end tests: real `chat-server` processes on 127.0.0.1,
//! each with its own temporary data directory and free ports, stopped when
//! the test ends (also when it fails: `Drop` kills and reaps them).
//!
//! The binary is the one cargo built next to the test executable
//! (`target/<profile>/chat-server`); the README's test command builds it
//! before running the tests. `CHAT_SERVER_BIN` overrides the path.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chat_shared::proto::chat_client::ChatClient;
use chat_shared::proto::{self, AuthResponse, CreateAccountRequest};
use tonic::transport::Channel;
use tonic::{Request, Status};

pub use chat_server;
pub mod browser;
pub mod clock_skew;
pub mod disk_stall;
pub mod netlab;
pub mod shim;

pub use chat_shared;

/// The `chat-server` binary under test.
pub fn server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("CHAT_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // A binary in target/<profile>/ (a benchmark) has it beside itself; a
    // test in target/<profile>/deps/ one directory up.
    let dir = exe.parent().expect("exe has a directory");
    [dir.join("chat-server"), dir.join("../chat-server")]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "chat-server is missing next to {}: build it first (cargo build --bins, \
                 with the same profile)",
                exe.display()
            )
        })
}

/// A port nobody listens on right now, for a replica to bind a moment
/// later. Chosen at random *below* the kernel's ephemeral range (Linux:
/// 32768-60999): a port from that range (what binding port 0 gives) can be
/// taken meanwhile as the source port of any outgoing connection -- a peer
/// dialling, a client connecting -- and the replica then fails to start
/// with "Address already in use". Each port is handed out once per test
/// process, and probed by binding it.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        let port = rand::random_range(20_000..32_000u16);
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in 20000-31999")
}

/// A plain HTTP/1.1 GET; returns the status line and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// A replica's Prometheus metrics (`--metrics-addr`), as text.
pub async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http_get(addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    body
}

/// One unlabelled series' value in scraped metrics.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let value = l.strip_prefix(series)?.strip_prefix(' ')?;
        value.split(' ').next()?.parse().ok()
    })
}

/// Fresh random request id.
pub fn rid() -> Vec<u8> {
    rand::random::<[u8; 16]>().to_vec()
}

/// A request carrying a session token.
pub fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    r
}

pub const SECRET: &str = "test-cluster-secret-0123456789";

/// One replica process.
pub struct Replica {
    pub id: u32,
    pub client_addr: SocketAddr,
    pub replication_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub join: Vec<SocketAddr>,
    pub extra_args: Vec<String>,
    pub log_level: String,
    /// Network namespace to run in (see `netlab`), if any.
    pub netns: Option<String>,
    /// PEM certificate to trust when the replica serves TLS (its
    /// `--tls-cert` is in `extra_args`).
    pub tls_ca: Option<Vec<u8>>,
    /// Environment variables added to the process's.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Replica {
    /// A replica configured under `root` (not started).
    pub fn new(root: &Path, id: u32, join: Vec<SocketAddr>) -> Self {
        Self {
            id,
            client_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            replication_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir: root.join(format!("replica-{id}")),
            log_path: root.join(format!("replica-{id}.log")),
            join,
            extra_args: Vec::new(),
            log_level: "info,chat_server=debug".into(),
            netns: None,
            tls_ca: None,
            env: Vec::new(),
            child: None,
        }
    }

    /// Starts the process (appending to its log file).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "replica {} already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the server: the pid we hold is the server's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(server_binary());
                c
            }
            None => Command::new(server_binary()),
        };
        cmd.arg("--id")
            .arg(self.id.to_string())
            .arg("--client-addr")
            .arg(self.client_addr.to_string())
            .arg("--replication-addr")
            .arg(self.replication_addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--log-level")
            .arg(&self.log_level)
            .args(&self.extra_args)
            .env("CHAT_CLUSTER_SECRET", SECRET)
            .env_remove("CHAT_CLUSTER_SECRET_FILE")
            // Every test client calls from 127.0.0.1 (or one bridge address),
            // like users behind one proxy, and some tests create hundreds of
            // accounts: the per-address sign-up limit is off unless a test
            // sets `--signups-per-address` (a flag wins over this variable).
            .env("CHAT_SIGNUPS_PER_ADDRESS", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        if !self.join.is_empty() {
            let join: Vec<String> = self.join.iter().map(|a| a.to_string()).collect();
            cmd.arg("--join").arg(join.join(","));
        }
        self.child = Some(cmd.spawn().expect("spawn chat-server"));
    }

    /// Starts the process and waits until it serves clients.
    pub async fn start(&mut self) {
        self.spawn();
        self.wait_ready(Duration::from_secs(30)).await;
    }

    /// Waits until the client API answers.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "replica {} exited with {status} during start-up:\n{}",
                    self.id,
                    self.log_tail()
                );
            }
            let tried = Instant::now();
            let answer = match self.try_client().await {
                Ok(mut c) => c
                    .list_servers(proto::ListServersRequest {})
                    .await
                    .map(drop)
                    .map_err(|s| format!("ListServers: {s:?}")),
                Err(e) => Err(format!("connect: {e:?}")),
            };
            let last = match answer {
                Ok(()) => return,
                Err(e) => format!("{e} (after {:?})", tried.elapsed()),
            };
            assert!(
                Instant::now() < deadline,
                "replica {} not ready after {timeout:?}; last try at {}: {last}\n{}\n{}",
                self.id,
                self.url(),
                self.process_state(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.client_addr)
    }

    async fn try_client(&self) -> Result<ChatClient<Channel>, tonic::transport::Error> {
        let mut endpoint = Channel::from_shared(self.url())
            .expect("url")
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10));
        if let Some(ca) = &self.tls_ca {
            endpoint = endpoint.tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            )?;
        }
        Ok(ChatClient::new(endpoint.connect().await?))
    }

    /// A client connected to this replica.
    pub async fn client(&self) -> ChatClient<Channel> {
        self.try_client().await.expect("connect to replica")
    }

    /// The server list this replica gives clients.
    pub async fn list_servers(&self) -> proto::ListServersResponse {
        self.client()
            .await
            .list_servers(proto::ListServersRequest {})
            .await
            .expect("ListServers")
            .into_inner()
    }

    /// The exit code, once the process has exited by itself.
    pub fn exit_code(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.code().unwrap_or(-1))
            }
            _ => None,
        }
    }

    /// Waits for the process to exit by itself (it must, within `timeout`);
    /// returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let t = Instant::now();
        loop {
            if let Some(code) = self.exit_code() {
                return code;
            }
            assert!(t.elapsed() < timeout, "replica {} kept running", self.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// kill -9, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for the process to exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("replica {} ignored SIGTERM for 15 s", self.id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal");
    }

    /// Sends a signal if the process is running (e.g. SIGCONT to be sure).
    pub fn signal_if_running(&self, sig: nix::sys::signal::Signal) {
        if let Some(child) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
        }
    }

    /// What the kernel says of the replica's process and its threads, for
    /// failure messages.
    pub fn process_state(&self) -> String {
        let Some(child) = &self.child else {
            return "no process".into();
        };
        let pid = child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let mut out = format!("pid {pid}: ");
        for line in status.lines().filter(|l| {
            ["State:", "Threads:", "VmRSS:", "SigPnd:", "ShdPnd:"]
                .iter()
                .any(|k| l.starts_with(k))
        }) {
            out.push_str(line);
            out.push_str("; ");
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let dir = task.path();
                let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
                let comm = read("comm");
                let stat = read("stat");
                // The state is the field after the parenthesised name.
                let state = stat.rsplit(") ").next().and_then(|r| r.split(' ').next());
                out.push_str(&format!(
                    "\n  thread {} {}: {} in {}",
                    task.file_name().to_string_lossy(),
                    comm.trim(),
                    state.unwrap_or("?"),
                    read("wchan").trim()
                ));
            }
        }
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count());
        out.push_str(&format!("\n  open files: {fds:?}"));
        out
    }

    /// The last lines of the replica's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process must be continued to die promptly.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A temporary directory for one test's replicas, removed afterwards unless
/// CHAT_TEST_KEEP is set (to read the replicas' logs).
pub struct TestDir {
    path: PathBuf,
    _guard: Option<tempfile::TempDir>,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("chat-{name}-"))
            .tempdir()
            .expect("temp dir");
        if std::env::var_os("CHAT_TEST_KEEP").is_some() {
            let path = dir.keep();
            eprintln!("keeping {}", path.display());
            return Self { path, _guard: None };
        }
        Self {
            path: dir.path().to_path_buf(),
            _guard: Some(dir),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Registers an account, panicking on failure.
pub async fn register(
    client: &mut ChatClient<Channel>,
    username: &str,
    password: &str,
) -> AuthResponse {
    client
        .create_account(CreateAccountRequest {
            request_id: rid(),
            username: username.into(),
            password: password.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("create {username}: {s:?}"))
        .into_inner()
}

/// A whole conversation, newest first, read `page_size` messages at a time.
pub async fn full_history(
    client: &mut ChatClient<Channel>,
    token: &str,
    peer: &str,
    page_size: u32,
) -> Result<Vec<proto::Message>, Status> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .get_history(authed(
                token,
                proto::GetHistoryRequest {
                    peer_id: peer.to_string(),
                    page_size,
                    cursor,
                },
            ))
            .await?
            .into_inner();
        out.extend(page.messages);
        if page.next_cursor.is_empty() {
            return Ok(out);
        }
        cursor = page.next_cursor;
    }
}

/// Asserts a call failed with `code`, and returns its message.
pub fn expect_code<T: std::fmt::Debug>(r: Result<T, Status>, code: tonic::Code) -> String {
    match r {
        Err(s) if s.code() == code => s.message().to_string(),
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// The next event of a live stream (within 5 s).
pub async fn next_event(events: &mut tonic::Streaming<proto::Event>) -> proto::event::Kind {
    use tokio_stream::StreamExt;
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("event within 5 s")
        .expect("stream open")
        .expect("event ok")
        .kind
        .expect("kind")
}

/// A replication-port client for a replica (status, protocol tests).
pub fn replication_client(r: &Replica) -> chat_server::replication::client::PeerClient {
    use chat_server::auth::ClusterSecret;
    use chat_server::replication::auth::AddPeerKey;
    use chat_server::replication::client::Dialer;
    Dialer {
        key: AddPeerKey::new(&ClusterSecret::new(SECRET.as_bytes().to_vec()).expect("secret")),
        tls_ca: r.tls_ca.clone(),
        dead_after: Duration::from_secs(5),
    }
    .client(&r.replication_addr.to_string())
    .expect("replication client")
}

pub use chat_server::proto::replication::StatusResponse;

/// Several replicas on 127.0.0.1, each joined to all the others.
pub struct TestCluster {
    pub replicas: Vec<Replica>,
    // Last, so replicas are stopped before their directories go.
    pub dir: TestDir,
}

impl TestCluster {
    /// `n` replicas (ids 1..=n), configured to join each other, not started.
    pub fn new(name: &str, n: u32) -> Self {
        let dir = TestDir::new(name);
        let mut replicas: Vec<Replica> = (1..=n)
            .map(|id| Replica::new(dir.path(), id, vec![]))
            .collect();
        let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.replication_addr).collect();
        for r in &mut replicas {
            r.join = addrs
                .iter()
                .copied()
                .filter(|a| *a != r.replication_addr)
                .collect();
        }
        Self { replicas, dir }
    }

    /// Starts every replica (all at once, as an operator would) and waits
    /// until each serves clients and all see each other live.
    pub async fn start(name: &str, n: u32) -> Self {
        Self::start_with(name, n, &[]).await
    }

    /// Like [`TestCluster::start`], every replica with `args` added to its
    /// command line.
    pub async fn start_with(name: &str, n: u32, args: &[&str]) -> Self {
        let mut c = Self::new(name, n);
        for r in &mut c.replicas {
            r.extra_args.extend(args.iter().map(|a| a.to_string()));
            r.spawn();
        }
        for r in &mut c.replicas {
            r.wait_ready(Duration::from_secs(30)).await;
        }
        c.converge(Duration::from_secs(30)).await;
        c
    }

    pub fn r(&mut self, id: u32) -> &mut Replica {
        &mut self.replicas[id as usize - 1]
    }

    /// Adds a replica joining through `join` (not started).
    pub fn add(&mut self, join: Vec<SocketAddr>) -> u32 {
        let id = self.replicas.len() as u32 + 1;
        self.replicas.push(Replica::new(self.dir.path(), id, join));
        id
    }

    pub async fn status(&self, id: u32) -> Result<StatusResponse, tonic::Status> {
        let mut c = replication_client(&self.replicas[id as usize - 1]);
        tokio::time::timeout(
            Duration::from_secs(10),
            c.status(chat_server::proto::replication::StatusRequest::default()),
        )
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("status timed out"))?
        .map(|r| r.into_inner())
    }

    /// Waits until every running replica has the same cutoffs and state
    /// digest, and sees every other running replica as live. Returns the
    /// digest and how long it took.
    pub async fn converge(&self, timeout: Duration) -> (String, Duration) {
        let started = Instant::now();
        loop {
            let running: Vec<u32> = self
                .replicas
                .iter()
                .filter(|r| r.is_running())
                .map(|r| r.id)
                .collect();
            let mut statuses = Vec::new();
            for &id in &running {
                if let Ok(s) = self.status(id).await {
                    statuses.push(s);
                }
            }
            if statuses.len() == running.len() {
                let digests: HashSet<_> = statuses.iter().map(|s| s.state_digest.clone()).collect();
                let cutoffs: HashSet<_> = statuses
                    .iter()
                    .map(|s| {
                        s.cutoffs
                            .iter()
                            .map(|c| (c.origin, c.seq))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let all_live = statuses.iter().all(|s| {
                    running.iter().all(|id| {
                        s.replica.as_ref().is_some_and(|r| r.id == *id)
                            || s.peers
                                .iter()
                                .any(|p| p.live && p.info.as_ref().is_some_and(|i| i.id == *id))
                    })
                });
                if digests.len() == 1 && cutoffs.len() == 1 && all_live {
                    return (statuses[0].state_digest.clone(), started.elapsed());
                }
            }
            if started.elapsed() > timeout {
                let logs: Vec<String> = self
                    .replicas
                    .iter()
                    .map(|r| format!("--- replica {} ---\n{}", r.id, r.log_tail()))
                    .collect();
                panic!(
                    "replicas did not converge within {timeout:?}; last statuses: {statuses:#?}\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
