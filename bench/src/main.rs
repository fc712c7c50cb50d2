//! `chat-bench`: runs named workloads against a local cluster it starts (or,
//! for `send`, `live` and `history`, against running replicas given with
//! `--attach`), and prints a table (and JSON with `--json`).

mod cpu;
mod dataset;
mod stats;
mod target;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Concurrent senders: messages/s and latency per send.
    Send,
    /// Time from a send's acknowledgement to the recipient's live event on
    /// another replica.
    Live,
    /// Page reads from a 100 000-message conversation.
    History,
    /// Start-up time and memory of a replica holding 1 000 000 messages.
    Restart,
    /// Time for an empty replica to catch up with 1 000 000 operations.
    Catchup,
    /// `ListServers` round trips (no storage, no session): the machine's
    /// ceiling for gRPC calls, to read the other figures against.
    Ping,
    /// `chat-server verify` (replay the log, compare with the state) on a
    /// stopped replica holding 1 000 000 messages: time and peak memory.
    Verify,
}

#[derive(Debug, Parser)]
#[command(
    name = "chat-bench",
    about = "Benchmarks for the replicated chat service"
)]
struct Args {
    workload: Workload,
    /// Concurrent clients; a comma-separated list runs each in turn.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    clients: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Use running replicas (client addresses, comma-separated) instead of
    /// starting a local cluster (send and live only).
    #[arg(long, value_delimiter = ',')]
    attach: Vec<String>,
    /// Replicas of the local cluster.
    #[arg(long, default_value_t = 3)]
    replicas: u32,
    /// Messages (restart, verify) or operations (catchup) to generate.
    #[arg(long, default_value_t = 1_000_000)]
    size: u64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `send`: write every send as a CSV line (clients, start ms into the
    /// measurement, latency ms, replica index) to this file, to see *when*
    /// slow sends happen (stalls come in bursts).
    #[arg(long)]
    timeline: Option<PathBuf>,
}

/// The replicas' allocator, so the load generator's own allocations cost
/// what theirs do.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The load generator shares the cores with the replicas it measures, so it
// should take as little of them as it can. Its clients wait on the replicas
// almost all the time: one thread drives them all with a fifth less CPU per
// send than a thread per core (no work stealing, no cross-thread wake-ups),
// and history readers read as fast either way (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let work = async {
        let duration = Duration::from_secs(args.duration);
        match args.workload {
            Workload::Restart => workloads::restart::run(args.size, args.seed).await,
            Workload::Catchup => vec![workloads::catchup::run(args.size, args.seed).await],
            Workload::Verify => vec![workloads::verify::run(args.size, args.seed).await],
            Workload::History => {
                let target = workloads::history::target(args.replicas, args.seed).await;
                let mut rows = Vec::new();
                for &clients in &args.clients {
                    let row = workloads::history::run(&target, clients, duration).await;
                    stats::print_table(std::slice::from_ref(&row));
                    rows.push(row);
                }
                rows
            }
            Workload::Send | Workload::Live | Workload::Ping => {
                let target = if args.attach.is_empty() {
                    target::Target::start(args.replicas).await
                } else {
                    target::Target::attach(&args.attach)
                };
                let tag = format!("{:x}", rand::random::<u32>());
                let mut rows = Vec::new();
                for (k, &clients) in args.clients.iter().enumerate() {
                    let tag = format!("{tag}-{k}");
                    let row = match args.workload {
                        Workload::Send => {
                            let (row, timeline) =
                                workloads::send::run(&target, clients, duration, args.seed, &tag)
                                    .await;
                            if let Some(path) = &args.timeline {
                                workloads::send::append_timeline(path, clients, &timeline);
                            }
                            row
                        }
                        Workload::Ping => workloads::ping::run(&target, clients, duration).await,
                        _ => workloads::live::run(&target, clients, duration, &tag).await,
                    };
                    stats::print_table(std::slice::from_ref(&row));
                    rows.push(row);
                }
                rows
            }
        }
    };
    // Ctrl-C drops the running workload, and with it the cluster it started
    // (its replicas are killed when their handles drop).
    let rows = tokio::select! {
        rows = work => rows,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted; stopping");
            std::process::exit(130);
        }
    };
    println!();
    stats::print_table(&rows);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows).expect("json"))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}
