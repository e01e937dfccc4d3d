#!/usr/bin/env bash
# Lead intake over HTTP, durable, side by side with the in-memory Node-RED peer:
# `wrk -t2 -c32` POSTs new leads to a release `kontor serve` on a fresh SQLite file —
# to `POST /api/v1/leads` (TARGET `leads`, the default: each accepted request is a stored
# lead and its lead-routing run, both durable before the answer) or as `lead.created`
# events to `POST /api/v1/events` (TARGET `events`: the run alone) — then measures how
# long the engine takes to finish the backlog (every lead scored by the lead-scoring
# plugin, routed, assigned and parked waiting for sales), counts the committed runs
# through the API and checks them against the accepted requests. Rounds alternate peer
# and Kontor; the last line is the median ratio.
#
#   tests/benches/intake.sh [SECONDS] [ROUNDS] [PEERS_DIR] [TARGET]
#
# Needs a release build (`cargo build --release -p kontor`; KONTOR_BIN overrides the
# binary) and wrk (Debian package `wrk`). The peer comes from PEERS_DIR (default
# ../shared/peers), started with its own run-nodered.sh. The per-token rate limit is off,
# as it would be for an integration that owns its token.
set -euo pipefail
secs="${1:-10}"
rounds="${2:-3}"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
peers="$(cd "${3:-$repo/../shared/peers}" && pwd)"
target="${4:-leads}"
case "$target" in
    leads) script="$here/leads.lua" ;;
    events) script="$here/intake.lua" ;;
    *) echo "TARGET is leads or events, not $target" >&2; exit 2 ;;
esac
kontor="${KONTOR_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/kontor}"
[ -x "$kontor" ] || { echo "no release binary at $kontor: cargo build --release -p kontor" >&2; exit 2; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
port=18900

kontor_round() {
    local dir; dir="$(mktemp -d)"
    cat > "$dir/kontor.toml" <<TOML
listen = "127.0.0.1:$port"
database_url = "sqlite://$dir/kontor.db"
workflows_dir = "$repo/workflows"
plugins_dir = "$repo/plugins"
[plugins]
cache_dir = "$dir/plugin-cache"
[secrets]
master_key_file = "$dir/master.key"
[http.rate_limits]
api = "off"
[log]
level = "info"
TOML
    (cd "$dir" && exec "$kontor" --config kontor.toml serve >"$dir/out" 2>"$dir/log") &
    local pid=$!
    local token=""
    for _ in $(seq 300); do
        token="$(sed -n 's/^first start: created admin token //p' "$dir/out")"
        [ -n "$token" ] && curl -sf "127.0.0.1:$port/readyz" >/dev/null && break
        sleep 0.2
    done
    [ -n "$token" ] || { echo "kontor did not start:" >&2; cat "$dir/log" >&2; kill $pid; exit 1; }
    local durability; durability="$(grep -o 'durability=[^ ]*\( [a-z_]*=[^ ]*\)*' "$dir/log" | head -1)"
    local line
    line="$(KONTOR_TOKEN="$token" wrk -t2 -c32 -d"${secs}s" -s "$script" \
        "http://127.0.0.1:$port/api/v1/$target" | tail -1)"
    # The backlog: how long after the load until every run has been scored and routed
    # (parked, waiting for sales' feedback) — the engine keeps up, or says by how much not.
    local t0 drained
    t0=$(date +%s.%N)
    while [ "$(curl -sf -H "Authorization: Bearer $token" \
        "127.0.0.1:$port/api/v1/runs?workflow=lead-routing&status=running&limit=1" \
        | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')" != 0 ]; do
        sleep 0.1
    done
    drained=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
    # Every accepted request must be a committed run.
    local runs=0 cursor="" page
    while :; do
        page="$(curl -sf -H "Authorization: Bearer $token" \
            "127.0.0.1:$port/api/v1/runs?workflow=lead-routing&limit=1000${cursor:+&cursor=$cursor}")"
        runs=$((runs + $(printf %s "$page" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')))
        cursor="$(printf %s "$page" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"] or "")')"
        [ -n "$cursor" ] || break
    done
    kill $pid; wait $pid 2>/dev/null || true
    rm -rf "$dir"
    echo "kontor $line committed_runs=$runs backlog_drained_s=$drained $durability"
}

node_round() {
    echo "node-red $("$peers/run-nodered.sh" 18800 "$secs" | tail -1)"
}

results="$(mktemp)"
for round in $(seq "$rounds"); do
    node_round | tee -a "$results"
    kontor_round | tee -a "$results"
done
python3 - "$results" <<'PY'
import re, statistics, sys
rows = [l.split(" ", 1) for l in open(sys.argv[1]) if l.strip()]
value = lambda text, key: float(re.search(key + r"=([0-9.]+)", text).group(1))
node = [value(t, "rps") for who, t in rows if who == "node-red"]
kontor = [(value(t, "rps"), value(t, "requests"), value(t, "non2xx"), value(t, "committed_runs"))
          for who, t in rows if who == "kontor"]
for rps, requests, non2xx, runs in kontor:
    accepted = requests - non2xx
    if runs < accepted:
        sys.exit(f"only {runs:.0f} committed runs for {accepted:.0f} accepted requests")
ratios = [k[0] / n for k, n in zip(kontor, node)]
print("ratios (kontor / node-red req/s): " + ", ".join(f"{r:.2f}" for r in ratios))
print(f"median ratio: {statistics.median(ratios):.2f}")
PY
rm -f "$results"
