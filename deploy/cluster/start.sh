#!/usr/bin/env bash
# Start the 3-node nats-server cluster of deploy/cluster (JetStream, loopback
# only) in the foreground; Ctrl-C (SIGINT) or SIGTERM stops all three.
#
#   deploy/cluster/start.sh          all three
#   deploy/cluster/start.sh 2        only nats-2 (to bring back a node you killed)
#
# Environment (all optional):
#   LW_CLUSTER_STATE        state folder: JetStream stores nats-1..3/ and logs
#                           (default: .latentwatch/cluster in the repository)
#   LW_CLUSTER_CLIENT_BASE  first client port (default 4222; nodes use base, +1, +2)
#   LW_CLUSTER_ROUTE_BASE   first route port (default 6222)
#   LW_CLUSTER_MONITOR_BASE first monitoring port (default 8222)
#   NATS_SERVER             the nats-server binary (default: from PATH, then /usr/sbin)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${LW_CLUSTER_STATE:-$here/../../.latentwatch/cluster}"
client="${LW_CLUSTER_CLIENT_BASE:-4222}"
route="${LW_CLUSTER_ROUTE_BASE:-6222}"
monitor="${LW_CLUSTER_MONITOR_BASE:-8222}"
bin="${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}"

if [[ ! -x "$bin" ]]; then
  echo "start.sh: nats-server not found (expected $bin): apt-get install nats-server, or set NATS_SERVER" >&2
  exit 1
fi
case "$state" in
  *[[:space:]]*)
    echo "start.sh: LW_CLUSTER_STATE must not contain spaces (nats-server reads it as a value): $state" >&2
    exit 1
    ;;
esac
mkdir -p "$state"
state="$(cd "$state" && pwd)"

for n in 1 2 3; do
  i=$((n - 1))
  export "LW_NATS_PORT_$n=$((client + i))"
  export "LW_NATS_CLUSTER_PORT_$n=$((route + i))"
  export "LW_NATS_MONITOR_PORT_$n=$((monitor + i))"
  export "LW_NATS_STORE_$n=$state/nats-$n"
  export "LW_NATS_ROUTE_$n=nats-route://127.0.0.1:$((route + i))"
  mkdir -p "$state/nats-$n"
done

pids=()
stop() {
  trap - INT TERM
  echo "start.sh: stopping ${pids[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  exit 0
}
trap stop INT TERM

nodes=("$@")
[[ ${#nodes[@]} -gt 0 ]] || nodes=(1 2 3)
for n in "${nodes[@]}"; do
  if [[ ! "$n" =~ ^[123]$ ]]; then
    echo "start.sh: node must be 1, 2 or 3, found '$n'" >&2
    exit 1
  fi
done

for n in "${nodes[@]}"; do
  "$bin" -c "$here/nats-$n.conf" -l "$state/nats-$n.log" &
  pids+=("$!")
done

urls="nats://127.0.0.1:$client,127.0.0.1:$((client + 1)),127.0.0.1:$((client + 2))"
echo "start.sh: nats-${nodes[*]// /,nats-} (pids ${pids[*]}) on $urls"
echo "start.sh: monitoring http://127.0.0.1:$monitor/jsz (and +1, +2); logs and stores in $state"
echo "start.sh: Ctrl-C stops them"

# wait until one exits (or a signal arrives); a node that dies alone is
# reported, the others keep running so a killed node can be restarted by hand
while true; do
  wait -n "${pids[@]}" 2>/dev/null || true
  alive=()
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then alive+=("$p"); fi
  done
  if [[ ${#alive[@]} -eq 0 ]]; then
    echo "start.sh: every node has exited; see $state/nats-*.log" >&2
    exit 1
  fi
  if [[ ${#alive[@]} -lt ${#pids[@]} ]]; then
    echo "start.sh: a node exited (still running: ${alive[*]}); see $state/nats-*.log" >&2
  fi
  pids=("${alive[@]}")
done
