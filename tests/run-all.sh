#!/usr/bin/env bash
# Runs every test on a fresh machine (Debian bookworm, root, Rust toolchain present):
# installs what the tests need, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# (Real components the tests start arrive with their issues: the OCI registries, sops, age.)
if [ "${#need_apt[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

echo "== cargo test"
cargo test --locked "$@"
