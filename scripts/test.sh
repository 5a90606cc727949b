#!/usr/bin/env bash
# Runs every test keygate has: the Rust workspace (unit, integration, doc tests) and the
# end-to-end tests that drive the gateway with unmodified Python ccxt and python-binance.
# Creates .venv with both from PyPI, at the versions tests/requirements.txt pins (and what
# they need at those of tests/constraints.txt), on first use (and again when .venv holds other versions), and installs what is missing from
# Debian: python3-venv, when python3 cannot make a virtual environment, SoftHSM2
# (softhsm2, for the PKCS#11 master-key tests) and libfaketime (faketime, for the audit
# archive's tests, which need events months old).
# Usage: bash scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs Debian packages when missing and this runs as root; otherwise says what to install.
apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing $*"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "missing: install $* (apt-get install $*) and run this again" >&2
        exit 1
    fi
}

# Whether .venv holds the versions the tests were written against (ccxt maps exchange
# errors to its own exception classes, which the tests name): tests/requirements.txt, and
# every package below them at the version tests/constraints.txt pins.
venv_is_current() {
    [ -x .venv/bin/python ] && .venv/bin/python - 2>/dev/null <<'PY'
import importlib.metadata, sys
for path in ("tests/requirements.txt", "tests/constraints.txt"):
    for line in open(path):
        name, _, version = line.split("#")[0].strip().partition("==")
        if not name:
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            # A constraint pins a package only if something pulls it in (some only on
            # another Python or platform); a requirement must be there.
            if path == "tests/requirements.txt":
                sys.exit(1)
            continue
        if installed != version:
            sys.exit(1)
PY
}

if ! venv_is_current; then
    echo "==> creating .venv with $(tr '\n' ' ' < tests/requirements.txt)"
    # Debian's python3 makes virtual environments only with python3-venv installed.
    python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt \
        -c tests/constraints.txt
fi
command -v softhsm2-util >/dev/null 2>&1 || apt_install softhsm2
# libfaketime runs keygate months back, for the tests of what only old events do.
command -v faketime >/dev/null 2>&1 || apt_install faketime
# The PKCS#11 and libfaketime tests fail instead of skipping when either cannot be found.
export KEYGATE_REQUIRE_SOFTHSM=1
export KEYGATE_REQUIRE_FAKETIME=1
export KEYGATE_TEST_PYTHON="$PWD/.venv/bin/python"
# Every test talks to 127.0.0.1 only: a proxy from the environment must not carry it.
export NO_PROXY=127.0.0.1,localhost,::1 no_proxy=127.0.0.1,localhost,::1
ccxt=$("$KEYGATE_TEST_PYTHON" -c 'import ccxt; print(ccxt.__version__)')
binance=$("$KEYGATE_TEST_PYTHON" -c 'import binance; print(binance.__version__)')
echo "==> ccxt $ccxt, python-binance $binance"

echo "==> cargo test"
# Bounded: a test that hangs fails the run rather than eat the whole of CI's budget.
timeout --signal=TERM 40m cargo test --workspace --locked "$@"
