#!/usr/bin/env bash
# Installs what `make demo` and `make test` need on a Debian 12 machine and
# nothing it already has. Idempotent: a second run installs nothing and
# finishes in about a second. `make deps`, `make demo`, `make test` and
# `.ci/run` all call it.
#
#   deploy/deps.sh            everything the tests need (the default)
#   deploy/deps.sh --demo     only what the demo needs (sshd, sudo, iproute2)
#   deploy/deps.sh --check    install nothing; list what is missing, exit 1 if any
#
# Needs root to install (apt-get, pip, npm run as root in CI). A Rust
# toolchain (rustup, Rust ≥ 1.95) must already be there: Debian's own cargo
# is too old for edition 2024, and this script does not fetch toolchains.
set -euo pipefail
cd "$(dirname "$0")/.."

want=tests
check_only=0
for arg in "$@"; do
  case "$arg" in
    --demo) want=demo ;;
    --check) check_only=1 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "deps.sh: unknown argument $arg (try --help)" >&2; exit 64 ;;
  esac
done

# Debian packages: the demo needs a real sshd and the account tools; the
# tests also need the login shells of the shell matrix, PostgreSQL,
# SoftHSM2, Chromium, asciinema, Python and Node for the independent clients.
demo_pkgs=(openssh-server openssh-client sudo iproute2 make procps util-linux passwd ca-certificates libsqlite3-dev)
test_pkgs=(asciinema python3 python3-pip python3-venv nodejs npm postgresql softhsm2 opensc
  chromium chromium-driver fish tcsh csh zsh mksh busybox systemd rsyslog rsyslog-gnutls)
pkgs=("${demo_pkgs[@]}")
[ "$want" = tests ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  # dpkg-query prints "install ok installed" only for a package that is fully there.
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    # A program that came from elsewhere (the machine image) counts as present.
    case "$p" in
      nodejs) command -v node >/dev/null && continue ;;
      npm) command -v npm >/dev/null && continue ;;
      python3) command -v python3 >/dev/null && continue ;;
      python3-pip) python3 -m pip --version >/dev/null 2>&1 && continue ;;
      python3-venv) python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && continue ;;
      postgresql) [ -x /usr/lib/postgresql/15/bin/initdb ] && continue ;;
    esac
    missing+=("$p")
  fi
done

py_missing=0
node_missing=0
if [ "$want" = tests ]; then
  # mcp 2.x: the client with input requests (mcp.client.client).
  python3 -c 'import mcp.client.client, prometheus_client' >/dev/null 2>&1 || py_missing=1
  [ -x testbed/witness/venv/bin/aics-witness ] || py_missing=1
  [ -d broker/tests/oidc/node_modules/oidc-provider ] || node_missing=1
  [ -x broker/tests/conformance/node_modules/.bin/conformance ] || node_missing=1
  [ -d control-plane/tests/ui/node_modules/playwright-core ] || node_missing=1
  [ -d control-plane/tests/mcp-ts/node_modules/@modelcontextprotocol/sdk ] || node_missing=1
fi
rust_missing=0
command -v cargo >/dev/null || rust_missing=1

if [ "$check_only" = 1 ]; then
  status=0
  [ ${#missing[@]} -gt 0 ] && { echo "missing Debian packages: ${missing[*]}"; status=1; }
  [ $py_missing = 1 ] && { echo "missing Python packages: mcp prometheus_client, or aics-witness in testbed/witness/venv"; status=1; }
  [ $node_missing = 1 ] && { echo "missing npm packages under broker/tests/oidc, broker/tests/conformance, control-plane/tests/ui or control-plane/tests/mcp-ts"; status=1; }
  [ $rust_missing = 1 ] && { echo "missing Rust toolchain (cargo)"; status=1; }
  [ $status = 0 ] && echo "nothing missing"
  exit $status
fi

if [ $rust_missing = 1 ]; then
  echo "deps.sh: no cargo on PATH. Install Rust 1.95 or later with rustup (https://rustup.rs), then run this again." >&2
  exit 69
fi

if [ ${#missing[@]} -gt 0 ] || [ $py_missing = 1 ] || [ $node_missing = 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: needs root to install: ${missing[*]:-} (run it with sudo)" >&2
    exit 77
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ $py_missing = 1 ]; then
  echo "deps.sh: installing the Python test clients (mcp, prometheus_client)"
  # Debian 12 marks its Python as externally managed; CI is a throwaway machine.
  python3 -m pip install --quiet 'mcp>=2.3,<3' prometheus_client 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages 'mcp>=2.3,<3' prometheus_client
  # The independent C2SP witness the audit tests submit checkpoints to, in
  # its own environment. It declares Python >= 3.12 but runs on 3.11
  # (checked: init, add-log, serve, cosigning), hence the flag; pinned.
  if [ ! -x testbed/witness/venv/bin/aics-witness ]; then
    python3 -m venv testbed/witness/venv
    testbed/witness/venv/bin/pip install --quiet --ignore-requires-python \
      aics-witness==0.1.0 aics-tlog==0.2.1
  fi
fi

if [ $node_missing = 1 ]; then
  echo "deps.sh: installing the local OpenID provider, the MCP conformance suite, playwright-core and the TypeScript MCP SDK (npm ci)"
  npm ci --no-audit --no-fund --prefix broker/tests/oidc
  # Brings its own Node 22 (the npm package `node`): the suite needs it.
  npm ci --no-audit --no-fund --prefix broker/tests/conformance
  # Drives Debian's chromium for the approval web page test.
  npm ci --no-audit --no-fund --prefix control-plane/tests/ui
  # The TypeScript SDK client of the in-conversation confirmation test.
  npm ci --no-audit --no-fund --prefix control-plane/tests/mcp-ts
fi
