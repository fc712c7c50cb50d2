//! Wiring: open the store, start the writer, serve the replication API, sync
//! with the peers, then serve the client API; shut down cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chat_shared::limits::REQUEST_MAX_BYTES;
use chat_shared::proto::chat_server::ChatServer;
use http::header::HeaderName;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};

use crate::api::{ChatApi, Context};
use crate::auth::{ClusterSecret, Passwords, Sessions, SignupLimit, Throttle, throttle};
use crate::clock_agreement::ClockAgreement;
use crate::config::ServeArgs;
use crate::events::EventHub;
use crate::proto::replication::ReplicaInfo;
use crate::proto::replication::replication_server::ReplicationServer;
use crate::replication::auth::{AddPeerKey, RequirePeerKey};
use crate::replication::client::{Dialer, MAX_MESSAGE_BYTES};
use crate::replication::{self, Cluster, ReplicationService, Settings, relay};
use crate::state::StorageError;
use crate::storage::Store;
use crate::writer::Writer;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("gRPC server: {}", causes(.0))]
    Transport(#[from] tonic::transport::Error),
}

/// An error with its causes, outermost first. tonic's transport errors say
/// only "transport error" themselves, which is left out when a cause
/// follows.
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.last().is_some_and(|p| p.ends_with(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.len() > 1 && parts[0] == "transport error" {
        parts.remove(0);
    }
    parts.join(": ")
}

/// The replica's identity, fixed when its data directory is created.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReplicaIdentity {
    pub id: u32,
    pub instance: String,
}

/// Where a replica keeps its store inside its data directory.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("db")
}

/// Runs a replica until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    check_announced_addresses(&args)?;
    let data_dir = args.data_dir();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| ServeError::Config(format!("cannot create {}: {e}", data_dir.display())))?;
    let secret = load_secret(args.cluster_secret_file.as_deref(), &data_dir)?;
    let store = Arc::new(
        Store::open(&store_dir(&data_dir))
            .map_err(|e| ServeError::Config(format!("cannot open {}: {e}", data_dir.display())))?,
    );
    let identity = load_identity(&store, args.id, &data_dir)?;
    let (origin, new_origin) = plan_origin(&store, args.id)?;
    tracing::info!(id = identity.id, instance = %identity.instance, origin, data_dir = %data_dir.display(), "opened store");

    let tls = tls_config(&args)?;
    let passwords = Passwords::new().map_err(|e| ServeError::Config(e.to_string()))?;
    let me = ReplicaInfo {
        id: args.id,
        instance: identity.instance.clone(),
        client_url: args.advertise_url(),
        replication_addr: args.replication_addr.to_string(),
        log_format: crate::entry::LOG_FORMAT,
        retired: false,
    };
    let settings = Settings {
        relay_timeout: Duration::from_millis(args.relay_timeout_ms),
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        repair_interval: Duration::from_millis(args.repair_interval_ms),
    };
    let dialer = Dialer {
        key: AddPeerKey::new(&secret),
        tls_ca: tls_ca(&args)?,
        dead_after: settings.relay_timeout,
    };
    // Ports in use fail the start now, not after a long snapshot or sync.
    // The client port opens only once this replica has caught up: until
    // then a client's connection is refused, and it moves on at once
    // (accepted and left unanswered, it would wait out its deadline).
    let client_addr = bind(args.client_addr).await?.local_addr()?;
    let replication_addr = bind(args.replication_addr).await?.local_addr()?;
    // One signal listener from here to the end: a stop during the snapshot
    // or the start-up sync is a clean one (nothing of this run's own is
    // written or relayed before `begin_run`), and no signal falls between
    // start-up and serving.
    let mut signal = Box::pin(wait_for_signal());
    // A brand-new replica joining a cluster starts from a copy of a peer's
    // data (before anything else touches the store), then syncs the rest.
    // (Stopped in the middle, it discards the partial copy next time.)
    tokio::select! {
        installed = replication::snapshot::bootstrap(&store, &dialer, &me, &args.join) => {
            installed?;
        }
        _ = &mut signal => {
            tracing::info!("stopped during start-up");
            return Ok(());
        }
    }

    let events = EventHub::default();
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let clock_agreement = Arc::new(ClockAgreement::new(Duration::from_millis(
        args.max_clock_offset_ms,
    )));
    let writer = Writer::start(
        store.clone(),
        origin,
        events.clone(),
        acks_tx,
        clock_agreement.clone(),
    )?;
    if args.disk_stall_timeout_ms > 0 {
        tokio::spawn(crate::disk_watchdog::watch(
            writer.clone(),
            Duration::from_millis(args.disk_stall_timeout_ms),
        ));
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // Replication first: peers must be able to reach us while we sync.
    let cluster = Cluster::new(
        me,
        store.clone(),
        writer.clone(),
        settings,
        dialer,
        clock_agreement.clone(),
    )
    .map_err(|e| ServeError::Config(e.to_string()))?;
    let replication_listener = bind(replication_addr).await?;
    let replication = tokio::spawn(serve_replication(
        cluster.clone(),
        RequirePeerKey::new(&secret),
        replication_listener,
        tls.clone(),
        shutdown_rx.clone(),
    ));
    tokio::spawn(relay::run(cluster.clone(), acks_rx));
    if let Some(addr) = args.metrics_addr {
        let listener = bind(addr).await?;
        tracing::info!(metrics = %listener.local_addr()?, "serving metrics");
        tokio::spawn({
            let served = crate::metrics::serve(
                listener,
                cluster.clone(),
                events.clone(),
                shutdown_rx.clone(),
            );
            async move {
                if let Err(e) = served.await {
                    tracing::warn!(error = %e, "the metrics endpoint stopped");
                }
            }
        });
    }
    tracing::info!(
        peers = cluster.links().len(),
        join = args.join.len(),
        "syncing with peers before serving"
    );
    let started = tokio::select! {
        started = cluster.startup(&args.join) => Some(started),
        _ = &mut signal => None,
    };
    // Listening before the run is recorded: a process that took the port
    // during the sync fails this start without using up an origin.
    let listening = match started {
        None => Ok(None),
        Some(Err(e)) => Err(ServeError::Config(e.to_string())),
        Some(Ok(())) => bind(client_addr).await.map(Some),
    };
    let client_listener = match listening {
        Ok(Some(listener)) => listener,
        ended => {
            // Stopped, refused by a peer, or the port taken: nothing of this
            // run's own was written or relayed (`begin_run` has not run), so
            // the writer records a clean stop -- also on a first run, whose
            // store a snapshot or the sync has filled -- and the next start
            // keeps the origin.
            if matches!(ended, Ok(None)) {
                tracing::info!("stopped during start-up");
            }
            let _ = shutdown_tx.send(true);
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, writer.close()).await;
            return ended.map(|_| ());
        }
    };
    begin_run(&store, origin, new_origin)?;

    let ctx = Arc::new(Context {
        replica_id: args.id,
        store: store.clone(),
        writer: writer.clone(),
        sessions: Sessions::new(&secret, args.session_ttl_secs),
        passwords,
        throttle: Throttle::new(throttle::Limits {
            per_account: args.password_tries_per_account,
            per_address: args.password_tries_per_address,
            window: Duration::from_secs(args.password_tries_window_secs),
        }),
        signups: SignupLimit::new(
            args.signups_per_address,
            Duration::from_secs(args.signups_window_secs),
        ),
        events,
        servers: cluster.clone(),
        clock: clock_agreement,
        shutdown: shutdown_rx.clone(),
        streams: Default::default(),
    });
    cluster
        .serving
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        client = %client_listener.local_addr()?,
        replication = %args.replication_addr,
        url = %args.advertise_url(),
        peers = cluster.links().len(),
        "serving"
    );

    // Stop on a signal, or when a peer says this replica has been retired
    // from the cluster (it must not serve writes nobody else will see) or
    // shows that its data was rolled back (`crate::origin::rolled_back`), or
    // when the store refused a commit (a full or failing disk) or the disk
    // hangs (`crate::disk_watchdog`): from then on
    // the replica could take no write and store no relay, and its readers
    // would fall behind unawares, so it stops and its clients fail over.
    let stopper = tokio::spawn({
        let cluster = cluster.clone();
        let writer = writer.clone();
        async move {
            let why = tokio::select! {
                _ = signal => None,
                why = cluster.wait_halted() => Some(why),
                failure = writer.failed() => Some(format!(
                    "{failure}: this replica can take no more writes; \
                     fix the disk and restart it (it catches up from its peers)"
                )),
            };
            match &why {
                None => tracing::info!("shutting down"),
                Some(e) => tracing::error!("{e}; shutting down"),
            }
            let _ = shutdown_tx.send(true);
            why
        }
    });

    let static_dir = static_dir(&args);
    if let Some(dir) = &static_dir {
        tracing::info!(dir = %dir.display(), "serving the web app");
    }
    let client = serve_client(ctx, static_dir, client_listener, tls, shutdown_rx.clone());
    let servers = async {
        let (c, r) = tokio::join!(client, replication);
        c.and(r.map_err(|e| ServeError::Config(format!("replication server: {e}")))?)
    };
    tokio::pin!(servers);
    // Serve until the servers stop; after a shutdown signal, give in-flight
    // calls a grace period, then stop regardless (every acknowledged write is
    // already on disk, so nothing is lost by not waiting longer).
    let mut grace = shutdown_rx;
    tokio::select! {
        result = &mut servers => result?,
        _ = async {
            let _ = grace.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; stopping anyway"),
    }
    // No local write after this; recorded only if every batch relayed is
    // durable here (a failed commit leaves the stop unclean, and the next
    // run takes a new origin).
    match tokio::time::timeout(SHUTDOWN_GRACE, writer.close()).await {
        Ok(true) => tracing::info!("clean stop recorded"),
        _ => tracing::warn!("could not record a clean stop; the next start takes a new origin"),
    }
    // Flushing only shortens the next start (the journal holds everything):
    // skipped when the store has failed -- fjall's flush worker may be gone,
    // and the wait would never end -- and bounded otherwise.
    if writer.has_failed() {
        tracing::warn!(
            "not flushing write buffers after a failed write; the next start replays the journal"
        );
    } else {
        let flushing = tokio::task::spawn_blocking({
            let store = store.clone();
            move || store.flush()
        });
        match tokio::time::timeout(SHUTDOWN_GRACE, flushing).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "could not flush write buffers; the next start replays the journal")
            }
            _ => tracing::warn!(
                "write buffers not flushed after {SHUTDOWN_GRACE:?}; stopping anyway, the next start replays the journal"
            ),
        }
    }
    tracing::info!("stopped");
    if stopper.is_finished()
        && let Ok(Some(why)) = stopper.await
    {
        return Err(ServeError::Config(why));
    }
    Ok(())
}

/// The replication address is also what peers are told to connect to, and
/// the client address what clients are told (unless `--advertise-url`
/// says otherwise): a wildcard address (0.0.0.0, ::) would send every peer
/// or browser to itself. Refused at start rather than found out later as a
/// replica that serves alone.
fn check_announced_addresses(args: &ServeArgs) -> Result<(), ServeError> {
    if args.replication_addr.ip().is_unspecified() {
        return Err(ServeError::Config(format!(
            "--replication-addr {} is also the address peers are told to reach this replica at: \
             give an address of this machine that the other replicas can reach",
            args.replication_addr
        )));
    }
    if args.client_addr.ip().is_unspecified() && args.advertise_url.is_none() {
        return Err(ServeError::Config(format!(
            "--client-addr {} listens everywhere, but clients are told this replica's URL: \
             add --advertise-url with the URL they should use (e.g. https://chat1.example.org)",
            args.client_addr
        )));
    }
    Ok(())
}

/// How long a shutting-down replica waits for open calls to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The client API: gRPC and gRPC-web on one port, plus health and
/// reflection for grpcurl and load balancers.
async fn serve_client(
    ctx: Arc<Context>,
    static_dir: Option<PathBuf>,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let chat = ChatServer::new(ChatApi::new(ctx)).max_decoding_message_size(REQUEST_MAX_BYTES);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ChatServer<ChatApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(chat_shared::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Config(format!("reflection: {e}")))?;
    let mut router = Routes::new(chat)
        .add_service(health_service)
        .add_service(reflection)
        .into_axum_router()
        // gRPC-web only on the gRPC routes: static files must stay plain HTTP.
        .route_layer(tonic_web::GrpcWebLayer::new());
    if let Some(dir) = static_dir {
        // The web app; unknown paths get its index.html (client-side routes).
        let index = ServeFile::new(dir.join("index.html"));
        router = router.fallback_service(ServeDir::new(&dir).fallback(index));
    }
    let mut builder = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(20)));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .layer(cors())
        .add_routes(Routes::from(router))
        .serve_with_incoming_shutdown(incoming(listener), async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await?;
    Ok(())
}

/// The replication API: native gRPC only, every call authenticated.
async fn serve_replication(
    cluster: Arc<Cluster>,
    auth: RequirePeerKey,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let service = InterceptedService::new(
        ReplicationServer::new(ReplicationService::new(cluster))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        auth,
    );
    let mut builder = Server::builder().http2_keepalive_interval(Some(Duration::from_secs(1)));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await?;
    Ok(())
}

/// Browsers on any origin may call the API (sessions travel in a header, not
/// a cookie, so there is no ambient authority to protect); they must be able
/// to read gRPC's status trailers.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods(AllowMethods::any())
        .allow_headers(AllowHeaders::any())
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(24 * 3600))
}

/// The web app's directory: --static-dir, else ./dist if it holds an app.
fn static_dir(args: &ServeArgs) -> Option<PathBuf> {
    match &args.static_dir {
        Some(dir) => Some(dir.clone()),
        None => {
            let dist = PathBuf::from("dist");
            dist.join("index.html").exists().then_some(dist)
        }
    }
}

/// The CA peers' certificates are checked against: --tls-ca, else our own
/// certificate chain (a cluster sharing one certificate, or self-signed).
fn tls_ca(args: &ServeArgs) -> Result<Option<Vec<u8>>, ServeError> {
    let Some(cert) = &args.tls_cert else {
        return Ok(None);
    };
    let path = args.tls_ca.as_ref().unwrap_or(cert);
    let ca = std::fs::read(path)
        .map_err(|e| ServeError::Config(format!("cannot read {}: {e}", path.display())))?;
    check_tls_ca(&ca).map_err(|why| {
        ServeError::Config(format!(
            "{} cannot be used to check the peers' certificates: {why}",
            path.display()
        ))
    })?;
    Ok(Some(ca))
}

/// Whether `ca` (PEM) makes a TLS client configuration: checked at start,
/// before anything is recorded, instead of at the first connection to a peer.
pub fn check_tls_ca(ca: &[u8]) -> Result<(), String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    if !String::from_utf8_lossy(ca).contains("-----BEGIN CERTIFICATE-----") {
        return Err("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Endpoint::from_static("https://127.0.0.1")
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
        .map(drop)
        .map_err(|e| causes(&e))
}

fn tls_config(args: &ServeArgs) -> Result<Option<ServerTlsConfig>, ServeError> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |p: &PathBuf| {
        std::fs::read(p)
            .map_err(|e| ServeError::Config(format!("cannot read {}: {e}", p.display())))
    };
    let config = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    // Building a server with it parses both files and checks that the key
    // is the certificate's; done now, a bad file stops the start before
    // anything is recorded (a late failure would count as a crash).
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .map_err(|e| {
            ServeError::Config(format!(
                "cannot serve TLS with --tls-cert {} and --tls-key {}: {}",
                cert.display(),
                key.display(),
                causes(&e)
            ))
        })?;
    Ok(Some(config))
}

/// The cluster secret: CHAT_CLUSTER_SECRET, else the file given, else
/// `<data-dir>/cluster.secret` (created on first start).
pub fn load_secret(file: Option<&Path>, data_dir: &Path) -> Result<ClusterSecret, ServeError> {
    // The variable wins over the file (an empty one counts as unset); both
    // given is most likely a left-over, so it is said.
    if let Some(value) = std::env::var("CHAT_CLUSTER_SECRET")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        if let Some(f) = file {
            tracing::warn!(
                ignored = %f.display(),
                "CHAT_CLUSTER_SECRET is set: using it, not --cluster-secret-file"
            );
        }
        return ClusterSecret::new(value.trim().as_bytes().to_vec()).map_err(ServeError::Config);
    }
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let path = data_dir.join("cluster.secret");
            if !path.exists() {
                tracing::warn!(
                    path = %path.display(),
                    "no cluster secret given: generated one; every replica of a cluster needs the same secret"
                );
                write_private(&path, hex::encode(rand::random::<[u8; 32]>()).as_bytes())?;
            }
            path
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        ServeError::Config(format!(
            "cannot read cluster secret {}: {e}",
            path.display()
        ))
    })?;
    ClusterSecret::new(String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec())
        .map_err(ServeError::Config)
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), ServeError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)?.write_all(contents)?;
    Ok(())
}

/// Checks the data directory belongs to replica `id` (or claims it for `id`).
fn load_identity(store: &Store, id: u32, dir: &Path) -> Result<ReplicaIdentity, ServeError> {
    if let Some(bytes) = store.meta_get("identity")? {
        let identity: ReplicaIdentity = serde_json::from_slice(&bytes).map_err(|e| {
            ServeError::Config(format!("corrupt identity in {}: {e}", dir.display()))
        })?;
        if identity.id != id {
            return Err(ServeError::Config(format!(
                "data directory {} belongs to replica {}, not {id}",
                dir.display(),
                identity.id
            )));
        }
        return Ok(identity);
    }
    let identity = ReplicaIdentity {
        id,
        instance: hex::encode(rand::random::<[u8; 8]>()),
    };
    store.meta_put(
        "identity",
        &serde_json::to_vec(&identity).map_err(|e| ServeError::Config(e.to_string()))?,
    )?;
    Ok(identity)
}

/// The origin to log under in this run (`crate::origin`): the last one
/// after a clean stop, else the next one (`true`: a new one). Only read
/// here; [`begin_run`] records it.
fn plan_origin(store: &Store, id: u32) -> Result<(u32, bool), ServeError> {
    let current = store.origin(id)?;
    if store.stopped_cleanly()? {
        return Ok((current, false));
    }
    let next = crate::origin::next(current).ok_or_else(|| {
        ServeError::Config(format!(
            "replica {id} has used up its origins (65 535 unclean stops); retire it and rejoin under a new id"
        ))
    })?;
    Ok((next, true))
}

/// Records the run's origin and that the run serves, before the first
/// client: from here on a crash is an unclean stop. (A start that fails or
/// is stopped before this -- a port in use, a signal during the sync --
/// wrote and relayed nothing of its own, so it uses up no origin.)
fn begin_run(store: &Store, origin: u32, new: bool) -> Result<(), ServeError> {
    if new {
        store.set_origin(origin)?;
        tracing::warn!(
            origin,
            incarnation = crate::origin::incarnation(origin),
            "the last run did not stop cleanly: this replica logs its writes under a new origin, \
             so none reuses a sequence number a peer may hold from before the stop"
        );
    }
    store.begin_run()?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
