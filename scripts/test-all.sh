#!/usr/bin/env bash
# Installs what is missing, builds with warnings as errors, and runs every test (unit and
# integration: real mosquitto with the plugin, real TLS clients).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
scripts/setup-debian.sh
cmake -S . -B build -DDEVICEGATE_WERROR=ON
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure
