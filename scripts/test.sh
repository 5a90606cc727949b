#!/usr/bin/env bash
# Runs every test keygate has: the Rust workspace (unit, integration, doc tests) and the
# end-to-end tests that drive the gateway with unmodified Python ccxt and python-binance.
# Creates .venv with both from PyPI on first use (and again when .venv lacks one), and
# installs SoftHSM2 (Debian's softhsm2, for the PKCS#11 master-key tests) when missing.
# Usage: bash scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import ccxt, binance' 2>/dev/null; then
    echo "==> creating .venv with ccxt and python-binance"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
if ! command -v softhsm2-util >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing softhsm2"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null
    else
        echo "SoftHSM2 is missing: install it (apt-get install softhsm2) and run this again" >&2
        exit 1
    fi
fi
# The PKCS#11 tests fail instead of skipping when SoftHSM2 cannot be found.
export KEYGATE_REQUIRE_SOFTHSM=1
export KEYGATE_TEST_PYTHON="$PWD/.venv/bin/python"
echo "==> ccxt $("$KEYGATE_TEST_PYTHON" -c 'import ccxt; print(ccxt.__version__)'), python-binance $("$KEYGATE_TEST_PYTHON" -c 'import binance; print(binance.__version__)')"

echo "==> cargo test"
cargo test --workspace --locked "$@"
