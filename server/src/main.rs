//! `chat-server`: runs a replica, or (`chat-server status`, `retire`) asks a
//! running one for its replication status or to retire a dead peer, or
//! (`chat-server verify`) checks a stopped one's data directory.

use clap::Parser;

/// mimalloc: the server allocates many small, short-lived buffers (keys,
/// values, protobuf messages); glibc's allocator spent a fifth of the
/// writer's time on them in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

use chat_server::config::{Cli, Command, LogFormat};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = cli.serve.threads.filter(|n| *n > 0) {
        runtime.worker_threads(n);
    }
    match runtime.build() {
        Ok(rt) => {
            let code = rt.block_on(run(cli));
            // Don't wait for blocking tasks: after a hung disk one may
            // never return (`chat_server::disk_watchdog`).
            rt.shutdown_background();
            code
        }
        Err(e) => {
            eprintln!("chat-server: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> std::process::ExitCode {
    let result = match cli.command {
        Some(Command::Status(args)) => chat_server::admin::status::run(args).await,
        Some(Command::Retire(args)) => chat_server::admin::retire::run(args.id, args.replica).await,
        Some(Command::Verify(args)) => chat_server::admin::verify::run(args),
        None => {
            // The storage engine's info logs are noise to an operator.
            let mut directives = cli.serve.log_level.clone();
            for quiet in ["fjall", "lsm_tree"] {
                if !directives.contains(quiet) {
                    directives.push_str(&format!(",{quiet}=warn"));
                }
            }
            match EnvFilter::try_new(&directives) {
                Err(e) => Err(format!(
                    "--log-level {:?} is not a log filter: {e}",
                    cli.serve.log_level
                )),
                Ok(filter) => {
                    let logs = tracing_subscriber::fmt().with_env_filter(filter);
                    match cli.serve.log_format {
                        LogFormat::Text => logs.init(),
                        LogFormat::Json => logs.json().init(),
                    }
                    let json = matches!(cli.serve.log_format, LogFormat::Json);
                    chat_server::server::serve(cli.serve).await.map_err(|e| {
                        // Whatever reads the JSON logs hears why the replica
                        // stopped too (stderr gets the sentence below).
                        if json {
                            tracing::error!(error = %e, "stopping");
                        }
                        e.to_string()
                    })
                }
            }
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
