//! `chat-bench`: runs named workloads against a local cluster it starts, or
//! against running replicas, and prints a table (and JSON with `--json`).

mod stats;
mod target;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Workload {
    /// Concurrent senders: messages/s and latency.
    Send,
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
    /// starting a local cluster.
    #[arg(long, value_delimiter = ',')]
    attach: Vec<String>,
    /// Replicas of the local cluster.
    #[arg(long, default_value_t = 3)]
    replicas: u32,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let target = if args.attach.is_empty() {
        target::Target::start(args.replicas).await
    } else {
        target::Target::attach(&args.attach)
    };
    let run_tag = format!("{:x}", rand::random::<u32>());
    let work = async {
        let mut rows = Vec::new();
        for (k, &clients) in args.clients.iter().enumerate() {
            let row = match args.workload {
                Workload::Send => {
                    workloads::send::run(
                        &target,
                        clients,
                        Duration::from_secs(args.duration),
                        args.seed,
                        &format!("{run_tag}-{k}"),
                    )
                    .await
                }
            };
            stats::print_table(std::slice::from_ref(&row));
            rows.push(row);
        }
        rows
    };
    let rows = tokio::select! {
        rows = work => rows,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted; stopping");
            drop(target);
            std::process::exit(130);
        }
    };
    println!();
    stats::print_table(&rows);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows).expect("json"))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    drop(target);
}
