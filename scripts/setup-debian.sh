#!/usr/bin/env bash
# Installs the Debian 12 packages DeviceGate needs to build, test and run, if any is missing.
#   scripts/setup-debian.sh          install what is missing
#   scripts/setup-debian.sh --list   print the package list
set -euo pipefail
packages=(
  build-essential cmake pkg-config openssl libssl-dev
  mosquitto mosquitto-clients mosquitto-dev libmosquitto-dev valgrind nftables
  catch2 libbenchmark-dev
  redis-server libhiredis-dev nlohmann-json3-dev libcurl4-openssl-dev libcpp-httplib-dev
  clang libclang-rt-14-dev
  docker-compose
)
if [[ ${1:-} == --list ]]; then
  echo "${packages[@]}"
  exit 0
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "Installing: ${missing[*]}"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
