//! CPU time spent per operation, by process, read from `/proc/<pid>/stat`.
//!
//! On a machine where the load generator and every replica share the same
//! cores, throughput swings with the neighbours; the CPU an operation costs
//! does much less. This is the figure to compare two builds by.

use std::time::{Duration, Instant};

use crate::stats::Row;
use crate::target::Target;

/// User + system CPU seconds of a process so far (0 if it cannot be read,
/// e.g. not on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may contain spaces; fields after the
    // closing parenthesis are space-separated: utime is the 14th field.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After ')': state is index 0, so utime (field 14) is index 11.
    (ticks(11) + ticks(12)) / USER_HZ
}

/// The unit of `/proc` CPU times: fixed at 100 by the Linux user ABI
/// whatever the kernel's internal tick rate.
const USER_HZ: f64 = 100.0;

/// CPU used by the load generator and by `target`'s replicas over the
/// measurement window `[start, start + duration)`; call it while the
/// workload runs, then [`CpuWindow::record`] the figures in its row.
pub async fn measure(target: &Target, start: Instant, duration: Duration) -> CpuWindow {
    let pids = target.server_pids();
    tokio::time::sleep_until(start.into()).await;
    let before = CpuSample::take(&pids);
    tokio::time::sleep_until((start + duration).into()).await;
    let after = CpuSample::take(&pids);
    CpuWindow {
        before,
        after,
        replicas: !pids.is_empty(),
    }
}

pub struct CpuWindow {
    before: CpuSample,
    after: CpuSample,
    replicas: bool,
}

impl CpuWindow {
    /// Adds CPU microseconds per operation to `row`: the load generator's,
    /// and the replicas' together when we started them.
    pub fn record(&self, row: &mut Row) {
        let (bench, replicas) = self.before.per_op_us(&self.after, row.ops);
        row.extra
            .insert("cpu_us_per_op_bench".into(), (bench.round() as u64).into());
        if self.replicas {
            row.extra.insert(
                "cpu_us_per_op_replicas".into(),
                (replicas.round() as u64).into(),
            );
        }
    }
}

/// CPU readings of the load generator and the replicas it started.
struct CpuSample {
    bench: f64,
    servers: Vec<f64>,
}

impl CpuSample {
    fn take(server_pids: &[u32]) -> Self {
        Self {
            bench: cpu_seconds(std::process::id()),
            servers: server_pids.iter().map(|&p| cpu_seconds(p)).collect(),
        }
    }

    /// Microseconds of CPU per operation between `self` and `later`, as
    /// (load generator, all replicas together).
    fn per_op_us(&self, later: &CpuSample, ops: u64) -> (f64, f64) {
        let ops = ops.max(1) as f64;
        let servers: f64 = later.servers.iter().sum::<f64>() - self.servers.iter().sum::<f64>();
        ((later.bench - self.bench) * 1e6 / ops, servers * 1e6 / ops)
    }
}
