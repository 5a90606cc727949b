#!/usr/bin/env bash
# Runs every test keygate has: the Rust workspace (unit, integration, doc tests) and the
# end-to-end tests that drive the gateway with unmodified Python ccxt and python-binance.
# Creates .venv with both from PyPI on first use (and again when .venv lacks one).
# Usage: bash scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import ccxt, binance' 2>/dev/null; then
    echo "==> creating .venv with ccxt and python-binance"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
export KEYGATE_TEST_PYTHON="$PWD/.venv/bin/python"
echo "==> ccxt $("$KEYGATE_TEST_PYTHON" -c 'import ccxt; print(ccxt.__version__)'), python-binance $("$KEYGATE_TEST_PYTHON" -c 'import binance; print(binance.__version__)')"

echo "==> cargo test"
cargo test --workspace --locked "$@"
