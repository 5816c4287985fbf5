#!/usr/bin/env bash
# The one list of Debian 12 packages DeviceGate needs, by purpose; installs what is missing.
#   scripts/setup-debian.sh [GROUP...]          install what is missing (default: build test)
#   scripts/setup-debian.sh --list [GROUP...]   print the packages (default: build test)
# Groups:
#   build           compile the plugin, devicegate-ctl and devicegate-worker
#   test            run the unit, integration and fuzz tests and the benchmarks; CI's tools
#   local           scripts/run-local.sh's stack and scripts/enroll-device.sh (with build)
#   runtime-broker  run mosquitto with the plugin (and devicegate-ctl): the broker image
#   runtime-worker  run devicegate-worker and devicegate-ctl: the worker image
#   mosquitto-2.1   scripts/check-mosquitto-2.1.sh: build the plugin and the broker from a 2.1 tree
# docker/Dockerfile calls this script too, so an image and a dev machine cannot drift apart.
set -euo pipefail
declare -A groups=(
  [build]="build-essential cmake pkg-config libssl-dev mosquitto-dev libmosquitto-dev
           libhiredis-dev nlohmann-json3-dev libcurl4-openssl-dev libcpp-httplib-dev"
  [test]="openssl mosquitto mosquitto-clients catch2 libbenchmark-dev redis-server
          clang libclang-rt-14-dev docker-compose valgrind nftables nginx wireguard-tools
          haproxy redis-sentinel curl python3"
  [local]="openssl mosquitto mosquitto-clients redis-server wireguard-tools curl python3"
  [runtime-broker]="mosquitto libhiredis0.14 libcurl4 libssl3 libcpp-httplib0.11 ca-certificates"
  [runtime-worker]="libhiredis0.14 libcurl4 libssl3 libcpp-httplib0.11 ca-certificates"
  [mosquitto-2.1]="libcjson-dev"
)
list=false
if [[ ${1:-} == --list ]]; then
  list=true
  shift
fi
selected=("$@")
[[ ${#selected[@]} -eq 0 ]] && selected=(build test)
packages=()
for g in "${selected[@]}"; do
  if [[ -z ${groups[$g]+set} ]]; then
    echo "setup-debian.sh: unknown group '$g' (groups: build test local runtime-broker runtime-worker mosquitto-2.1)" >&2
    exit 1
  fi
  read -r -a more <<<"$(echo ${groups[$g]})"
  packages+=("${more[@]}")
done
if $list; then
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
