#!/usr/bin/env bash
# Measures the idle-TLS flood of issue 12 finding 5 and the defences of docs/operations.md (idle TLS connections):
# a real mosquitto 2.0.11 with the DeviceGate plugin, in a private network namespace (so the
# nftables rules touch nothing else), with 256 file descriptors. The attacker (127.0.0.2) holds
# TLS connections with the revoked device's certificate and never sends CONNECT; good devices
# (127.0.0.3) connect with MQTT CONNECT.
#
# usage (as root, needs iproute2, nftables, python3):
#   bench/idle_tls_flood.sh <build-dir> [--measure-hold]
# <build-dir> holds plugin/devicegate.so and test-pki/ (tests/pki/make-test-pki.sh <build-dir>/test-pki).
set -euo pipefail

build=$(realpath "${1:?usage: $0 <build-dir> [--measure-hold]}")
measure=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
pki=$build/test-pki
plugin=$build/plugin/devicegate.so
ns=dgflood$$
work=$(mktemp -d)
nofile=256
port=8883

cleanup() {
    [[ -n ${broker_pid:-} ]] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
ip -n "$ns" link set lo up

# $1: extra listener lines (e.g. max_connections)
start_broker() {
    cat >"$work/mosquitto.conf" <<EOF
per_listener_settings false
log_dest file $work/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
persistence false
user root
listener $port 0.0.0.0
cafile $pki/tenant-a-chain.crt
certfile $pki/server-chain.crt
keyfile $pki/server.key
require_certificate true
$1
plugin $plugin
plugin_opt_tenant_ca_file $pki/subca-a.crt
plugin_opt_ica_file $pki/ica.crt
plugin_opt_root_ca_file $pki/root.crt
plugin_opt_crl_file $pki/subca-a.crl.pem
EOF
    : >"$work/mosquitto.log"
    ip netns exec "$ns" prlimit --nofile=$nofile:$nofile mosquitto -c "$work/mosquitto.conf" &
    broker_pid=$!
    for _ in $(seq 50); do
        grep -q "running" "$work/mosquitto.log" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "broker did not start:" >&2
    cat "$work/mosquitto.log" >&2
    exit 1
}

stop_broker() {
    kill "$broker_pid"
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=
}

# $1: nft ruleset ("" for none)
set_rules() {
    ip netns exec "$ns" nft flush ruleset
    [[ -n $1 ]] && ip netns exec "$ns" nft -f - <<<"$1"
    return 0
}

flood() {
    ip netns exec "$ns" python3 "$here/idle_tls_flood.py" --port $port --cafile "$pki/root.crt" \
        --cert "$pki/devices/dev-revoked.crt" --key "$pki/devices/dev-revoked.key" --count 300 \
        --good-cert "$pki/devices/dev-001.crt" --good-key "$pki/devices/dev-001.key" --good-id dev-001 "$@"
}

# Per source address: at most 16 concurrent connections to the MQTT port, and at most
# 10 new connections per second (burst 20). conntrack counts established connections.
nft_limits=$(cat <<EOF
table inet devicegate {
    set mqtt_conns { type ipv4_addr; size 65535; flags dynamic; }
    set mqtt_rate { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }
    chain input {
        type filter hook input priority filter; policy accept;
        tcp dport $port ct state new add @mqtt_rate { ip saddr limit rate over 10/second burst 20 packets } counter drop
        tcp dport $port ct state new add @mqtt_conns { ip saddr ct count over 16 } counter reject with tcp reset
    }
}
EOF
)

run() {
    local name=$1 listener_extra=$2 rules=$3
    shift 3
    set_rules "$rules"
    start_broker "$listener_extra"
    printf '%-44s %s\n' "$name" "$(flood "$@")"
    echo "    broker log: $(grep -c "system socket count has been exceeded" "$work/mosquitto.log" || true)" \
        "'socket count exceeded' warnings, $(grep -c "max_connections exceeded" "$work/mosquitto.log" || true)" \
        "'max_connections exceeded' notices"
    stop_broker
}

echo "mosquitto $(mosquitto -h | head -1 | awk '{print $3}'), nofile $nofile, attacker 300 idle TLS connections"
run "A: no defence" "" ""
run "B: max_connections 200" "max_connections 200" ""
run "C: nftables 16 conns/source + 10 new/s" "" "$nft_limits"
run "D: C + max_connections 200" "max_connections 200" "$nft_limits"
if [[ $measure == --measure-hold ]]; then
    run "E: how long mosquitto keeps an idle TLS conn" "" "" --count 20 --measure-hold 130
fi
