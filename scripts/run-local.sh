#!/usr/bin/env bash
# Runs a local tenant broker: installs what is missing, builds, creates a dev PKI under
# run/pki, writes run/mosquitto.conf from config/mosquitto.conf.example, and starts
# mosquitto with the DeviceGate plugin in the foreground (Ctrl-C stops it).
# Also starts a redis-server for the deny-list and first-connect jobs.
# DEVICEGATE_PORT overrides the port (default 8883, on 127.0.0.1 only), DEVICEGATE_REDIS_PORT
# the Redis port (default 16379, not to collide with a system Redis).
set -euo pipefail
root="$(dirname "$(readlink -f "$0")")/.."
cd "$root"
root=$PWD
port=${DEVICEGATE_PORT:-8883}
redis_port=${DEVICEGATE_REDIS_PORT:-16379}
scripts/setup-debian.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target devicegate_plugin devicegate-ctl
run=$root/run
mkdir -p "$run/data" "$run/redis"
scripts/make-dev-pki.sh "$run/pki"

# The example config with this machine's paths: what is tested here is what operators copy.
sed -e "s|/etc/devicegate/pki|$run/pki|g" \
    -e "s|/usr/lib/mosquitto/devicegate.so|$root/build/plugin/devicegate.so|" \
    -e "s|/var/lib/mosquitto/|$run/data/|" \
    -e "s|^listener 8883$|listener $port 127.0.0.1|" \
    -e "s|redis://redis:6379|redis://127.0.0.1:$redis_port|" \
    config/mosquitto.conf.example > "$run/mosquitto.conf"
# mosquitto started as root drops to the 'mosquitto' user, which cannot read run/pki.
[[ $(id -u) -eq 0 ]] && sed -i '1i user root' "$run/mosquitto.conf"

cat <<MSG

DeviceGate local tenant broker: mqtts://localhost:$port (config: run/mosquitto.conf)

Connect a device (step 5 of the enrollment guide; the client id must be the certificate's CN):
  mosquitto_pub --host localhost --port $port \\
    --cafile $run/pki/tenant-chain.crt \\
    --cert $run/pki/devices/device-001.crt --key $run/pki/devices/device-001.key \\
    -i device-001 -t v1/devices/me/telemetry -m '{"test": 1}'

Revoke device-001 at once through Redis (disconnected within ~100 ms), see it, undo it:
  build/worker/devicegate-ctl --redis redis://127.0.0.1:$redis_port revoke device-001 --reason test
  build/worker/devicegate-ctl --redis redis://127.0.0.1:$redis_port status device-001
  build/worker/devicegate-ctl --redis redis://127.0.0.1:$redis_port unrevoke device-001

Revoke device-002 with a new CRL (the plugin loads it within a second and kicks the device):
  scripts/dev-revoke.sh device-002

Starting redis-server (port $redis_port, data in run/redis) and mosquitto (Ctrl-C stops both)...
MSG
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$run/redis" --appendonly yes \
    --logfile "$run/redis/redis.log" --daemonize no &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null' EXIT
mosquitto -c "$run/mosquitto.conf"
