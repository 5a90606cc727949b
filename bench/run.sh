#!/usr/bin/env bash
# keygate load benchmark: a signed read (GET /api/v3/account) on loopback, (a) straight to
# the Binance simulator, (b) through keygate, (c) through nginx as a plain reverse proxy
# when nginx is installed (on PATH or /usr/sbin/nginx; this script installs nothing).
# Prints p50/p99 latency and throughput of each, the latency keygate and nginx add, and
# PASS/FAIL against the targets. Release mode only; finishes in about a minute.
#
#   bash bench/run.sh                      # defaults
#   bash bench/run.sh --concurrency 64     # options are passed to the example
#
# The criterion benchmark of one order's CPU path (target < 10 µs) is separate:
#   cargo bench -p keygate-gateway --bench request_path -- --measurement-time 3
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "note: nginx not found; (c) is skipped (apt-get install nginx to compare)" >&2
fi

cargo build --release --example loadbench -p keygate-gateway
# Ask cargo where it put the binary (honours CARGO_TARGET_DIR and .cargo/config).
bin=$(cargo build --release --example loadbench -p keygate-gateway --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*loadbench"' | tail -n 1 | cut -d'"' -f4)
[ -n "$bin" ] && [ -x "$bin" ] || { echo "cannot find the loadbench binary" >&2; exit 1; }
exec "$bin" "$@"
