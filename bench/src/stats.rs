//! Latency statistics and the result table.

use std::time::Duration;

use serde::Serialize;

/// One row of results: what other tools read from `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub clients: usize,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Anything else the workload measured (e.g. RSS), by name.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Row {
    /// A row from per-operation latencies over `elapsed`.
    pub fn from_latencies(
        workload: &str,
        clients: usize,
        mut lat: Vec<Duration>,
        elapsed: Duration,
    ) -> Self {
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i].as_secs_f64() * 1000.0
        };
        Row {
            workload: workload.into(),
            clients,
            ops: lat.len() as u64,
            ops_per_sec: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
            max_ms: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            extra: serde_json::Map::new(),
        }
    }
}

pub fn print_table(rows: &[Row]) {
    println!(
        "{:<12} {:>7} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8}  extra",
        "workload", "clients", "ops", "ops/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for r in rows {
        let extra: Vec<String> = r.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<12} {:>7} {:>9} {:>11.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}",
            r.workload,
            r.clients,
            r.ops,
            r.ops_per_sec,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            extra.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let lat = (1..=100).map(Duration::from_millis).collect();
        let r = Row::from_latencies("x", 1, lat, Duration::from_secs(1));
        assert_eq!(
            (r.ops, r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(r.ops_per_sec, 100.0);
    }
}
