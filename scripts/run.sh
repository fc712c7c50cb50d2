#!/usr/bin/env bash
# Runs a local 3-replica chat cluster on this machine.
#
#   ./scripts/run.sh            build (release) and start replicas 1-3
#
# Builds the web app into ./dist first (trunk; scripts/setup.sh installs the
# tools on first use), and every replica serves it on its client port.
#
# Replica N serves its client API (gRPC, gRPC-web) on 127.0.0.1:700N,
# replication on 127.0.0.1:710N and Prometheus metrics on 127.0.0.1:720N,
# keeps its data in ./data/replica-N and logs to ./data/replica-N.log.
# Ctrl-C stops all three. Data persists across runs; delete ./data to start
# over. CHAT_BASE_PORT=8000 moves the ports to
# 800N/810N/820N.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${CHAT_BASE_PORT:-7000}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-always}

scripts/setup.sh run
export PATH="${CHAT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chat-tools}/binaryen/node_modules/.bin:$HOME/.cargo/bin:$PATH"
echo "==> building the web app into dist/ (trunk, release)"
trunk build --release
echo "==> building chat-server (release)"
cargo build --release --bin chat-server

mkdir -p data
if [ ! -s data/cluster.secret ]; then
  umask 077
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > data/cluster.secret
fi

for n in 1 2 3; do
  for port in $((base + n)) $((base + 100 + n)) $((base + 200 + n)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is already in use (another cluster running?); set CHAT_BASE_PORT to use other ports" >&2
      exit 1
    fi
  done
done

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping replicas"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# The three replicas share this machine: each gets a share of its cores.
threads=$(( $(nproc) / 3 )); [ "$threads" -ge 1 ] || threads=1

for n in 1 2 3; do
  join=()
  for m in 1 2 3; do
    [ "$m" = "$n" ] || join+=("127.0.0.1:$((base + 100 + m))")
  done
  static=()
  [ -d dist ] && static=(--static-dir dist)
  ./target/release/chat-server \
    --id "$n" \
    --client-addr "127.0.0.1:$((base + n))" \
    --replication-addr "127.0.0.1:$((base + 100 + n))" \
    --metrics-addr "127.0.0.1:$((base + 200 + n))" \
    --data-dir "data/replica-$n" \
    --cluster-secret-file data/cluster.secret \
    --join "$(IFS=,; echo "${join[*]}")" \
    --threads "$threads" \
    "${static[@]}" \
    >>"data/replica-$n.log" 2>&1 &
  pids+=($!)
done

# Wait until every replica answers on its client port.
for n in 1 2 3; do
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$((base + n))") 2>/dev/null; then break; fi
    if ! kill -0 "${pids[$((n - 1))]}" 2>/dev/null; then
      echo "replica $n exited; see data/replica-$n.log:" >&2
      tail -n 20 "data/replica-$n.log" >&2
      exit 1
    fi
    sleep 0.1
  done
done

echo
echo "Local chat cluster is up:"
for n in 1 2 3; do
  echo "  replica $n   http://127.0.0.1:$((base + n))/   (replication 127.0.0.1:$((base + 100 + n)), metrics http://127.0.0.1:$((base + 200 + n))/metrics, log data/replica-$n.log)"
done
echo
echo "Open any replica's URL in a browser (the chat app; each serves it). Status of replica 1:"
echo "  ./target/release/chat-server status --replication-addr 127.0.0.1:$((base + 101)) --cluster-secret-file data/cluster.secret"
echo "Press Ctrl-C to stop."
wait
