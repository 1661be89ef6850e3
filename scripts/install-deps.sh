#!/usr/bin/env bash
# Installs the Debian 12 packages TPS Kanban needs to build, test and run
# locally (as root; nothing is installed when everything is present).
set -euo pipefail

packages=(
    build-essential cmake pkg-config curl
    libnats-dev nats-server librabbitmq-dev rabbitmq-server
    prometheus-cpp-dev libtomlplusplus-dev libboost-dev libboost-filesystem-dev
    libspdlog-dev libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libsystemd-dev
    libgtest-dev libgmock-dev libbenchmark-dev
    python3-celery gnuplot-nox
    chromium prometheus bash-completion
    lintian man-db systemd
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root (or install them)" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
