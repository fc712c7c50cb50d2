//! What the benchmark runs against: a local cluster it starts (release
//! `chat-server` processes in a temporary directory, stopped at the end or on
//! Ctrl-C) or replicas already running (`--attach`).

use std::time::Duration;

use chat_shared::proto::chat_client::ChatClient;
use chat_tests::{Replica, TestCluster};
use tonic::transport::Channel;

pub struct Target {
    pub urls: Vec<String>,
    /// The processes we started (stopped when the target is dropped).
    pub cluster: Option<TestCluster>,
}

impl Target {
    pub async fn start(replicas: u32) -> Self {
        Self::start_prepared(Self::prepare(replicas)).await
    }

    /// A local cluster configured but not started, so its data directories
    /// can be filled first.
    pub fn prepare(replicas: u32) -> TestCluster {
        let mut cluster = TestCluster::new("bench", replicas);
        // Replicas sharing this machine each get a share of its cores (and
        // the load generator its own runtime): measured on 2 cores, 3
        // replicas with one network thread each spend ~10% less CPU per
        // send than with two each (docs/performance.md).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = std::env::var("CHAT_BENCH_THREADS")
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(cores / replicas as usize)
            .max(1);
        for r in &mut cluster.replicas {
            r.log_level = std::env::var("CHAT_BENCH_LOG").unwrap_or_else(|_| "warn".into());
            r.extra_args
                .extend(["--threads".into(), threads.to_string()]);
        }
        cluster
    }

    /// Starts a prepared cluster and waits until it has converged.
    pub async fn start_prepared(mut cluster: TestCluster) -> Self {
        let replicas = cluster.replicas.len();
        for r in &mut cluster.replicas {
            r.spawn();
        }
        for r in &mut cluster.replicas {
            r.wait_ready(Duration::from_secs(120)).await;
        }
        cluster.converge(Duration::from_secs(120)).await;
        eprintln!(
            "started {replicas} replica(s) under {}",
            cluster.dir.path().display()
        );
        Self {
            urls: cluster.replicas.iter().map(Replica::url).collect(),
            cluster: Some(cluster),
        }
    }

    pub fn attach(addrs: &[String]) -> Self {
        Self {
            urls: addrs
                .iter()
                .map(|a| {
                    if a.starts_with("http") {
                        a.clone()
                    } else {
                        format!("http://{a}")
                    }
                })
                .collect(),
            cluster: None,
        }
    }

    /// Process ids of the replicas we started (none when attached).
    pub fn server_pids(&self) -> Vec<u32> {
        self.cluster
            .iter()
            .flat_map(|c| {
                c.replicas
                    .iter()
                    .filter(|r| r.is_running())
                    .map(|r| r.pid() as u32)
            })
            .collect()
    }

    /// A client with its own connection to replica `i % n`.
    pub async fn client(&self, i: usize) -> ChatClient<Channel> {
        let url = &self.urls[i % self.urls.len()];
        let channel = Channel::from_shared(url.clone())
            .expect("url")
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        ChatClient::new(channel)
    }
}
