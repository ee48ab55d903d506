#!/usr/bin/env bash
# Runs every test on a fresh machine (Debian bookworm, root, Rust toolchain present):
# installs what the tests need, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the OCI registry without a referrers API (distribution 2.8).
need_apt=()
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "== apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The registry's package starts it as a service where systemd runs; the tests start their own.

# crates.io: an OCI 1.1 registry with the referrers API.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v ferro-oci-server >/dev/null; then
  echo "== cargo install ferro-oci-server"
  cargo install --locked --quiet ferro-oci-server
fi

echo "== cargo test"
cargo test --locked "$@"
