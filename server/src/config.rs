//! Command-line flags. Every flag has an environment-variable fallback, and
//! the names are the ones docs, scripts and tests use.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chat-server",
    version,
    about = "A replica of the replicated chat service",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a running replica's replication status (id, cutoffs, peers,
    /// state digest) as JSON.
    Status(AdminArgs),
    /// Remove a replica from the cluster for good (its machine or disk is
    /// gone). Ask any other replica; the replica to retire must be stopped.
    /// Its id is never used again; its past writes stay.
    Retire(RetireArgs),
    /// Check a stopped replica's data directory: replay its log into a
    /// scratch store and compare with its state (and check the log has no
    /// gaps and no deleted content left). Prints JSON; exits 1 on a mismatch.
    Verify(VerifyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The replica's data directory (as given to --data-dir).
    #[arg(long, env = "CHAT_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// This replica's id: a small positive integer, unique in the cluster.
    #[arg(long, env = "CHAT_REPLICA_ID", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=u16::MAX as i64))]
    pub id: u32,

    /// Address of the client API (gRPC and gRPC-web, and the web app). To
    /// listen on every interface (0.0.0.0), also give --advertise-url.
    #[arg(long, env = "CHAT_CLIENT_ADDR", default_value = "127.0.0.1:7001")]
    pub client_addr: SocketAddr,

    /// Address of the replication API (native gRPC, peers only). Peers are
    /// told this address, so it must be one they can reach (not 0.0.0.0).
    #[arg(long, env = "CHAT_REPLICATION_ADDR", default_value = "127.0.0.1:7101")]
    pub replication_addr: SocketAddr,

    /// Address to serve Prometheus metrics on (plain HTTP, `GET /metrics`);
    /// off unless given. Keep it on a private interface: it is not
    /// authenticated (it shows request counts and latencies, replication
    /// state; never accounts, messages or secrets).
    #[arg(long, env = "CHAT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// URL clients should use to reach this replica's client API, as
    /// announced in server lists [default: http(s)://<client-addr>].
    #[arg(long, env = "CHAT_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// Directory holding this replica's log and state [default:
    /// ./data/replica-<id>].
    #[arg(long, env = "CHAT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// File holding the cluster secret, shared by all replicas (signs
    /// sessions, authenticates peers). The environment variable
    /// CHAT_CLUSTER_SECRET may hold the secret itself instead. With neither,
    /// a secret is generated in <data-dir>/cluster.secret (fine for a single
    /// replica; a cluster needs one shared secret).
    #[arg(long, env = "CHAT_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// Replication addresses (host:port) of running replicas to join or
    /// rejoin, comma-separated.
    #[arg(long, env = "CHAT_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,

    /// Log filter: a level (error, warn, info, debug, trace) or tracing
    /// directives such as "info,chat_server::replication=debug".
    #[arg(long, env = "CHAT_LOG", default_value = "info")]
    pub log_level: String,

    /// Log lines as human-readable text, or as one JSON object per line
    /// (for log collectors).
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// PEM certificate chain: serve both ports over TLS (with --tls-key).
    /// Required beyond localhost: passwords travel inside requests.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate that signed the peers' certificates, for
    /// replication over TLS [default: the --tls-cert chain].
    #[arg(long, env = "CHAT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// How long a session token stays valid, in seconds.
    #[arg(long, env = "CHAT_SESSION_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub session_ttl_secs: u64,

    /// How long a relay to a peer may take before the peer is declared
    /// dead, in milliseconds. Must exceed the disk's worst fsync stall.
    #[arg(long, env = "CHAT_RELAY_TIMEOUT_MS", default_value_t = 2000)]
    pub relay_timeout_ms: u64,

    /// How long one write to the disk (a group commit) may take before the
    /// disk is deemed hung and the replica stops, in milliseconds, so that
    /// its clients fail over instead of reading a state that no longer
    /// receives writes; 0 never stops. Half of it logs a warning. At least
    /// 1000 (disks stall for most of a second now and then).
    #[arg(long, env = "CHAT_DISK_STALL_TIMEOUT_MS", default_value_t = 20_000,
          value_parser = disk_stall_timeout)]
    pub disk_stall_timeout_ms: u64,

    /// How often this replica compares its log with each live peer's and
    /// forwards entries of other replicas that the peer lacks (repair of
    /// entries whose origin reached only some replicas), in milliseconds.
    /// Best at a few relay timeouts: anything a peer lacks for longer is
    /// not on its way.
    #[arg(long, env = "CHAT_REPAIR_INTERVAL_MS", default_value_t = 6000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub repair_interval_ms: u64,

    /// Interval between heartbeats to each peer, in milliseconds.
    #[arg(long, env = "CHAT_HEARTBEAT_MS", default_value_t = 250)]
    pub heartbeat_ms: u64,

    /// How far this replica's wall clock may be from most of the cluster's,
    /// in milliseconds, before it refuses clients (they fail over) until its
    /// clock is corrected: a clock off by more would stamp messages with
    /// wrong times and move every replica's timestamps with it. 0 never
    /// refuses. See docs/replication.md, "A wrong clock".
    #[arg(long, env = "CHAT_MAX_CLOCK_OFFSET_MS", default_value_t = 5_000)]
    pub max_clock_offset_ms: u64,

    /// Password tries (Login, and the current password of ChangePassword and
    /// DeleteAccount) per account name before further tries are throttled to one per
    /// window / this; 0 turns this limit off. Counted per replica.
    #[arg(long, env = "CHAT_PASSWORD_TRIES_PER_ACCOUNT", default_value_t = 10)]
    pub password_tries_per_account: u32,

    /// Password tries per client IP address, whatever the account, before
    /// further tries are throttled likewise; 0 turns this limit off (behind
    /// a reverse proxy every client has the proxy's address).
    #[arg(long, env = "CHAT_PASSWORD_TRIES_PER_ADDRESS", default_value_t = 100)]
    pub password_tries_per_address: u32,

    /// The window over which used password tries come back, in seconds.
    #[arg(long, env = "CHAT_PASSWORD_TRIES_WINDOW_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub password_tries_window_secs: u64,

    /// New accounts (CreateAccount) per client IP address before further
    /// ones are limited to one per window / this; 0 turns this limit off
    /// (behind a reverse proxy every client has the proxy's address: limit
    /// sign-ups there). Counted per replica; a retry of a creation that went
    /// through is free.
    #[arg(long, env = "CHAT_SIGNUPS_PER_ADDRESS", default_value_t = 20)]
    pub signups_per_address: u32,

    /// The window over which used sign-ups come back, in seconds.
    #[arg(long, env = "CHAT_SIGNUPS_WINDOW_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub signups_window_secs: u64,

    /// Directory of the web app to serve on the client port [default: ./dist
    /// if it exists].
    #[arg(long, env = "CHAT_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Threads serving network calls [default, or 0: one per CPU core]. Replicas
    /// sharing one machine (a local cluster) each do better with a share
    /// of the cores than with all of them: fewer threads contend and hand
    /// work across cores (see docs/performance.md).
    #[arg(long, env = "CHAT_THREADS")]
    pub threads: Option<usize>,
}

impl ServeArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("data/replica-{}", self.id)))
    }

    pub fn advertise_url(&self) -> String {
        self.advertise_url.clone().unwrap_or_else(|| {
            let scheme = if self.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", self.client_addr)
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct RetireArgs {
    /// Id of the replica to retire.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=u16::MAX as i64))]
    pub id: u32,

    #[command(flatten)]
    pub replica: AdminArgs,
}

/// How to reach a running replica as its operator.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Replication address of the replica to ask.
    #[arg(long, env = "CHAT_REPLICATION_ADDR", default_value = "127.0.0.1:7101")]
    pub replication_addr: String,

    /// File holding the cluster secret (or set CHAT_CLUSTER_SECRET).
    #[arg(long, env = "CHAT_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// PEM CA certificate to trust, if the replica serves TLS.
    #[arg(long, env = "CHAT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

/// `--disk-stall-timeout-ms`: 0 (off), or long enough that an ordinary slow
/// fdatasync does not stop the replica.
fn disk_stall_timeout(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(ms) if ms == 0 || ms >= 1000 => Ok(ms),
        Ok(_) => Err("must be 0 (never stop) or at least 1000 ms".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        Cli::command_for_test();
        let cli = Cli::try_parse_from([
            "chat-server",
            "--id",
            "3",
            "--join",
            "127.0.0.1:1,127.0.0.1:2",
        ])
        .unwrap();
        assert_eq!(cli.serve.id, 3);
        assert_eq!(cli.serve.join.len(), 2);
        assert_eq!(cli.serve.data_dir(), PathBuf::from("data/replica-3"));
        assert_eq!(cli.serve.advertise_url(), "http://127.0.0.1:7001");
        assert!(Cli::try_parse_from(["chat-server", "--id", "0"]).is_err());
        let status = Cli::try_parse_from(["chat-server", "status", "--replication-addr", "x:1"]);
        assert!(matches!(status.unwrap().command, Some(Command::Status(_))));
        let retire = Cli::try_parse_from(["chat-server", "retire", "--id", "2"]).unwrap();
        assert!(matches!(
            retire.command,
            Some(Command::Retire(RetireArgs { id: 2, .. }))
        ));
        assert!(
            Cli::try_parse_from(["chat-server", "retire"]).is_err(),
            "--id is required"
        );
    }

    #[test]
    fn the_disk_stall_timeout_is_off_or_at_least_a_second() {
        let parse = |v: &str| {
            Cli::try_parse_from(["chat-server", "--disk-stall-timeout-ms", v])
                .map(|c| c.serve.disk_stall_timeout_ms)
        };
        assert_eq!(parse("0").unwrap(), 0);
        assert_eq!(parse("1000").unwrap(), 1000);
        let short = parse("999").unwrap_err().to_string();
        assert!(short.contains("at least 1000 ms"), "{short}");
        assert!(parse("soon").is_err());
        let default = Cli::try_parse_from(["chat-server"]).unwrap();
        assert_eq!(default.serve.disk_stall_timeout_ms, 20_000);
    }

    impl Cli {
        fn command_for_test() {
            use clap::CommandFactory;
            Cli::command().debug_assert();
        }
    }
}
