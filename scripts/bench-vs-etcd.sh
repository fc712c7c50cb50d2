#!/usr/bin/env bash
# Durable writes, side by side: our 3-replica cluster (chat-bench send) and a
# 3-member etcd cluster (puts through etcd's HTTP gateway, driven by hey), at
# the same concurrency levels, in one run on this machine.
#
#   ./scripts/bench-vs-etcd.sh [DURATION_SECONDS] [CLIENTS,...] [ROUNDS]
#
# This machine is shared and noisy, so only ratios measured in the same
# round mean anything; ROUNDS > 1 repeats the whole comparison (fresh
# clusters each time) and ends with how the ratios spread over the rounds.
#
# Installs Debian's etcd-server and hey if missing. Every etcd member gets
# its own temporary data directory and loopback ports; everything is
# stopped at the end, also on Ctrl-C. Prints both tables and the ratios, and
# writes target/bench-vs-etcd.json.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10}
clients=${2:-1,16,64}
rounds=${3:-1}
case "$rounds" in
  '' | *[!0-9]* | 0) echo "ROUNDS must be a positive number, not '$rounds'" >&2; exit 2 ;;
esac

if ! command -v etcd >/dev/null || ! command -v hey >/dev/null; then
  echo "==> installing etcd-server and hey"
  export DEBIAN_FRONTEND=noninteractive
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  $sudo_ apt-get install -y -qq etcd-server hey >/dev/null
fi
command -v python3 >/dev/null || { echo "python3 is needed to print the comparison" >&2; exit 1; }

echo "==> building chat-server and chat-bench (release)"
cargo build --release --bin chat-server --bin chat-bench

work=$(mktemp -d -t bench-etcd-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# CPU seconds (user + system) used so far by the given processes.
cpu_seconds() {
  python3 - "$@" <<'PY'
import os, sys
ticks = 0
for pid in sys.argv[1:]:
    # Fields after the command name's closing parenthesis: utime and stime
    # are the 12th and 13th.
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks += int(fields[11]) + int(fields[12])
print(ticks / os.sysconf("SC_CLK_TCK"))
PY
}

# One comparison: etcd at every concurrency level, then ours; the rows go to
# $work/round-N/rows.json. (Unindented: the here-documents below are Python.)
one_round() {
local round=$1
round_dir="$work/round-$round"
mkdir -p "$round_dir"
echo "==> round $round of $rounds: starting a 3-member etcd cluster"
cluster=""
client_urls=() peer_urls=()
for i in 1 2 3; do
  client_urls[$i]="http://127.0.0.1:$(free_port)"
  peer_urls[$i]="http://127.0.0.1:$(free_port)"
  cluster+="m$i=${peer_urls[$i]},"
done
cluster=${cluster%,}
for i in 1 2 3; do
  etcd --name "m$i" --data-dir "$round_dir/m$i" \
    --listen-client-urls "${client_urls[$i]}" --advertise-client-urls "${client_urls[$i]}" \
    --listen-peer-urls "${peer_urls[$i]}" --initial-advertise-peer-urls "${peer_urls[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token bench \
    --log-level error >"$round_dir/m$i.log" 2>&1 &
  pids+=($!)
done
healthy() {
  python3 -c 'import sys, urllib.request; sys.exit(0 if b"true" in urllib.request.urlopen(sys.argv[1] + "/health", timeout=1).read() else 1)' "$1" 2>/dev/null
}
for _ in $(seq 1 100); do
  if healthy "${client_urls[1]}"; then break; fi
  sleep 0.2
done
healthy "${client_urls[1]}" || { echo "etcd did not become healthy" >&2; cat "$round_dir"/m*.log >&2; exit 1; }

# A put through the v3 JSON gateway: key "bench", value "x" * 64, base64.
body='{"key":"YmVuY2g=","value":"'$(printf 'x%.0s' $(seq 1 64) | base64 -w0)'"}'
etcd_json="$round_dir/etcd.json"
echo "[" >"$etcd_json"
first=1
IFS=, read -ra levels <<<"$clients"
for c in "${levels[@]}"; do
  echo "==> etcd: $c clients, ${duration}s"
  members_before=$(cpu_seconds "${pids[@]}")
  # hey runs under python only to read its CPU time (getrusage of the child).
  hey_cpu=$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "w"), check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)' "$round_dir/hey-$c.txt" \
    hey -z "${duration}s" -c "$c" -m POST -T application/json -d "$body" "${client_urls[1]}/v3/kv/put")
  members_cpu=$(python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$members_before" "$(cpu_seconds "${pids[@]}")")
  python3 - "$c" "$first" "$round_dir/hey-$c.txt" "$hey_cpu" "$members_cpu" >>"$etcd_json" <<'PY'
import re, sys, json
out = open(sys.argv[3]).read()
c = int(sys.argv[1]); first = sys.argv[2] == "1"
hey_cpu, members_cpu = float(sys.argv[4]), float(sys.argv[5])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
total = re.search(r"Total:\s+([\d.]+) secs", out)
def pct(p):
    m = re.search(r"\s%s%%+ in ([\d.]+) secs" % p, out)
    return float(m.group(1)) * 1000 if m else float("nan")
slowest = float(re.search(r"Slowest:\s+([\d.]+) secs", out).group(1)) * 1000
codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
ok = sum(int(n) for code, n in codes if code == "200")
bad = sum(int(n) for code, n in codes if code != "200")
# CPU per put, named as chat-bench names its own: the load tool's, and the
# cluster's (all three members).
extra = {"cpu_us_per_op_bench": round(hey_cpu / max(ok, 1) * 1e6),
         "cpu_us_per_op_replicas": round(members_cpu / max(ok, 1) * 1e6)}
row = {"workload": "etcd-put", "clients": c, "ops": ok, "ops_per_sec": rps,
       "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": slowest, "errors": bad,
       "extra": extra}
print(("" if first else ",") + json.dumps(row))
PY
  first=0
done
echo "]" >>"$etcd_json"
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

echo "==> ours: chat-bench send, clients $clients, ${duration}s"
ours_json="$round_dir/ours.json"
./target/release/chat-bench send --clients "$clients" --duration "$duration" --json "$ours_json"

python3 - "$round" "$ours_json" "$etcd_json" "$round_dir/rows.json" <<'PY'
import json, sys
rnd = int(sys.argv[1])
ours = {r["clients"]: r for r in json.load(open(sys.argv[2]))}
etcd = {r["clients"]: r for r in json.load(open(sys.argv[3]))}
rows = []
def cpu(r):
    """CPU per operation, load tool + cluster, in microseconds."""
    x = r.get("extra", {})
    if "cpu_us_per_op_bench" in x and "cpu_us_per_op_replicas" in x:
        return f"{x['cpu_us_per_op_bench'] + x['cpu_us_per_op_replicas']:>7}"
    return f"{'?':>7}"
print()
print(f"round {rnd}")
print(f"{'clients':>7} | {'ours ops/s':>10} {'p50':>6} {'p99':>7} {'cpu µs':>7} | {'etcd ops/s':>10} {'p50':>6} {'p99':>7} {'cpu µs':>7} | {'ops ratio':>9} {'p50 ratio':>9} {'p99 ratio':>9}")
print("-" * 120)
for c in sorted(ours):
    o, e = ours[c], etcd.get(c)
    if not e:
        continue
    r = {"round": rnd, "clients": c, "ours": o, "etcd": e,
         "throughput_ratio": o["ops_per_sec"] / e["ops_per_sec"],
         "p50_ratio": o["p50_ms"] / e["p50_ms"], "p99_ratio": o["p99_ms"] / e["p99_ms"]}
    rows.append(r)
    print(f"{c:>7} | {o['ops_per_sec']:>10.0f} {o['p50_ms']:>6.2f} {o['p99_ms']:>7.2f} {cpu(o)} | "
          f"{e['ops_per_sec']:>10.0f} {e['p50_ms']:>6.2f} {e['p99_ms']:>7.2f} {cpu(e)} | "
          f"{r['throughput_ratio']:>8.2f}x {r['p50_ratio']:>8.2f}x {r['p99_ratio']:>8.2f}x")
print("(latencies in ms; cpu µs = CPU time per operation of the load tool and the whole cluster;")
print(" ops ratio = ours / etcd, higher is better; latency ratios = ours / etcd, lower is better)")
json.dump(rows, open(sys.argv[4], "w"))
PY
}

for round in $(seq 1 "$rounds"); do
  one_round "$round"
done

mkdir -p target
python3 - "$work" "$rounds" target/bench-vs-etcd.json <<'PY'
import json, os, platform, statistics, sys
work, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = []
for r in range(1, rounds + 1):
    rows += json.load(open(f"{work}/round-{r}/rows.json"))
if rounds > 1:
    print()
    print(f"over {rounds} rounds (each ratio measured within its round; median, then every round):")
    for c in sorted({r["clients"] for r in rows}):
        mine = [r for r in rows if r["clients"] == c]
        for key in ("throughput_ratio", "p50_ratio", "p99_ratio"):
            vals = [r[key] for r in mine]
            each = " ".join(f"{v:.2f}" for v in vals)
            print(f"  {c:>3} clients  {key:<16} median {statistics.median(vals):.2f}x   [{each}]")
json.dump({"machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
           "rounds": rounds, "rows": rows}, open(out, "w"), indent=2)
print(f"written to {out}")
PY
