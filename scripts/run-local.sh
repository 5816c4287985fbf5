#!/usr/bin/env bash
# Runs the local tenant stack: installs what is missing, builds, creates a dev PKI under
# run/pki, writes run/mosquitto.conf from config/mosquitto.conf.example, and starts
# redis-server, the fake ThingsBoard and hawkBit (devicegate-fakes), devicegate-worker
# (config/devicegate-worker.conf.example, pointed at the fakes through environment variables),
# devicegate-bridge (the enrollment API over HTTPS, with the embedded CA: the dev Sub-CA) and
# mosquitto with the DeviceGate plugin. Then it runs the enrollment guide's flow: a one-time
# token, enrollment of device-100 (key and CSR made on the device), its first mTLS connect,
# and shows it registered. Logs in run/*.log; Ctrl-C stops everything.
# Ports (127.0.0.1 only): DEVICEGATE_PORT (MQTT, 8883), DEVICEGATE_REDIS_PORT (16379, not to
# collide with a system Redis), DEVICEGATE_TB_PORT (18080), DEVICEGATE_HAWKBIT_PORT (18081),
# DEVICEGATE_METRICS_PORT (9464), DEVICEGATE_BRIDGE_PORT (8443).
set -euo pipefail
root="$(dirname "$(readlink -f "$0")")/.."
cd "$root"
root=$PWD
port=${DEVICEGATE_PORT:-8883}
redis_port=${DEVICEGATE_REDIS_PORT:-16379}
tb_port=${DEVICEGATE_TB_PORT:-18080}
hb_port=${DEVICEGATE_HAWKBIT_PORT:-18081}
metrics_port=${DEVICEGATE_METRICS_PORT:-9464}
bridge_port=${DEVICEGATE_BRIDGE_PORT:-8443}
# A stack left over from an earlier run (or another service) on one of these ports would be
# used instead of this run's, silently: refuse to start instead.
for p in "$port" "$redis_port" "$tb_port" "$hb_port" "$metrics_port" "$bridge_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "run-local.sh: 127.0.0.1:$p is in use (a stack from an earlier run? see: ss -ltnp 'sport = :$p');" \
         "stop it, or choose other ports (DEVICEGATE_*_PORT, in this script's header)" >&2
    exit 1
  fi
done
scripts/setup-debian.sh build local
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target devicegate_plugin devicegate-ctl devicegate-worker devicegate-bridge devicegate-fakes
run=$root/run
# Each run starts empty, like the fakes: no Redis state, PKI, CA index or CRL (with an earlier
# run's revocations) from an earlier run.
rm -rf "$run/redis" "$run/bridge" "$run/data" "$run/pki"
mkdir -p "$run/data" "$run/redis" "$run/bridge"
scripts/make-dev-pki.sh "$run/pki"

# The example config with this machine's paths: what is tested here is what operators copy.
sed -e "s|/etc/devicegate/pki|$run/pki|g" \
    -e "s|/usr/lib/mosquitto/devicegate.so|$root/build/plugin/devicegate.so|" \
    -e "s|/var/lib/mosquitto/|$run/data/|" \
    -e "s|^listener 8883$|listener $port 127.0.0.1|" \
    -e "s|redis://redis:6379|redis://127.0.0.1:$redis_port|" \
    config/mosquitto.conf.example > "$run/mosquitto.conf"
# A service identity that may read the plugin's $SYS statistics (docs/operations.md).
echo 'plugin_opt_service svc-monitor read $SYS/broker/devicegate/#' >> "$run/mosquitto.conf"
# mosquitto started as root drops to the 'mosquitto' user, which cannot read run/pki.
[[ $(id -u) -eq 0 ]] && sed -i '1i user root' "$run/mosquitto.conf"

ctl="build/ctl/devicegate-ctl --redis redis://127.0.0.1:$redis_port"
pids=()
stop_all() {  # last started first: the bridge, mosquitto, the worker, the fakes, then Redis
  local status=$?  # the script's exit status, kept: a kill or wait failing here must not stop the loop
  set +e
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null; wait "${pids[i]}" 2>/dev/null; done
  exit "$status"
}
# Stops here, with its log, unless the process `pids[$1]` is still running.
require_running() {
  if ! kill -0 "${pids[$1]}" 2>/dev/null; then
    echo "$2 did not start; run/$3.log:" >&2
    cat "$run/$3.log" >&2
    exit 1
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM  # runs the EXIT trap
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$run/redis" --appendonly yes \
    --logfile "$run/redis.log" --daemonize no &
pids+=($!)
for _ in $(seq 50); do
  [[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] && break
  sleep 0.1
done
require_running 0 redis-server redis
build/tests/devicegate-fakes --thingsboard "127.0.0.1:$tb_port" --hawkbit "127.0.0.1:$hb_port" > "$run/fakes.log" 2>&1 &
pids+=($!)
# The shipped example, with this machine's endpoints from the environment (which wins); in a
# file, so that devicegate-ctl reconcile can read the same settings (printed below).
cat > "$run/worker.env" <<ENV
DEVICEGATE_REDIS_URL=redis://127.0.0.1:$redis_port
DEVICEGATE_THINGSBOARD_URL=http://127.0.0.1:$tb_port
DEVICEGATE_THINGSBOARD_PASSWORD=tenant
DEVICEGATE_HAWKBIT_URL=http://127.0.0.1:$hb_port
DEVICEGATE_HAWKBIT_PASSWORD=admin
DEVICEGATE_METRICS_LISTEN=127.0.0.1:$metrics_port
DEVICEGATE_CONSUMER_NAME=local-worker
DEVICEGATE_TENANT_CA_FILE=$run/pki/subca.crt
DEVICEGATE_ICA_FILE=$run/pki/ica.crt
DEVICEGATE_ROOT_CA_FILE=$run/pki/root.crt
ENV
env $(<"$run/worker.env") build/worker/devicegate-worker -c config/devicegate-worker.conf.example > "$run/worker.log" 2>&1 &
pids+=($!)
mosquitto -c "$run/mosquitto.conf" > "$run/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  grep -q "Opening ipv4 listen socket on port $port" "$run/mosquitto.log" 2>/dev/null && break
  sleep 0.1
done
require_running 3 mosquitto mosquitto
# The enrollment API: the shipped example with this machine's paths from the environment. The
# embedded CA signs with the dev Sub-CA; its TLS certificate is the broker's (CN localhost).
DEVICEGATE_BRIDGE_LISTEN="127.0.0.1:$bridge_port" DEVICEGATE_BRIDGE_TLS_CERT="$run/pki/server-chain.crt" \
DEVICEGATE_BRIDGE_TLS_KEY="$run/pki/server.key" DEVICEGATE_BRIDGE_SUB_CA_FILE="$run/pki/subca.crt" \
DEVICEGATE_BRIDGE_ICA_FILE="$run/pki/ica.crt" DEVICEGATE_BRIDGE_ROOT_FILE="$run/pki/root.crt" \
DEVICEGATE_BRIDGE_CA_KEY_FILE="$run/pki/subca.key" DEVICEGATE_BRIDGE_STATE_DIR="$run/bridge" \
DEVICEGATE_BRIDGE_REDIS_URL="redis://127.0.0.1:$redis_port" \
DEVICEGATE_BRIDGE_WG_GATEWAY_PUBLIC_KEY="$(wg genkey | wg pubkey)" DEVICEGATE_BRIDGE_WG_ENDPOINT="localhost:51820" \
  build/bridge/devicegate-bridge -c bridge/devicegate-bridge.conf.example > "$run/bridge.log" 2>&1 &
pids+=($!)
api="https://localhost:$bridge_port"
for _ in $(seq 100); do
  curl -s --cacert "$run/pki/tenant-chain.crt" -o /dev/null "$api/.well-known/est/cacerts" && break
  sleep 0.1
done
require_running 1 devicegate-fakes fakes
require_running 2 devicegate-worker worker
require_running 4 devicegate-bridge bridge

echo
echo "The enrollment guide, step by step, against the local stack:"
echo "\$ devicegate-ctl enroll-token device-100      (the operator makes a one-time token)"
$ctl enroll-token device-100 > "$run/device-100.token"
echo "dgt_…(secret: shown to nobody else, stored in Redis only as a hash)"
echo "\$ scripts/enroll-device.sh --api $api --id device-100 --out run/device-100 ..."
echo "  (the device makes its key and CSR with openssl; POST {api}/devices/device-100/enroll)"
rm -rf "$run/device-100"
scripts/enroll-device.sh --api "$api" --id device-100 --out "$run/device-100" --cacert "$run/pki/tenant-chain.crt" \
  --token-file "$run/device-100.token"
echo "\$ mosquitto_pub -i device-100 --cert device.crt --key device.key --cafile ca-chain.crt ..."
mosquitto_pub --host localhost --port "$port" --cafile "$run/device-100/ca-chain.crt" \
  --cert "$run/device-100/device.crt" --key "$run/device-100/device.key" \
  -i device-100 -t v1/devices/me/telemetry -m '{"enrolled": 1}'
for _ in $(seq 50); do
  $ctl status device-100 2>/dev/null | grep -q "hawkbit:      registered" && break
  sleep 0.1
done
echo "\$ devicegate-ctl status device-100"
$ctl status device-100 || true

echo
echo "First connect of device-001 (mosquitto_pub over mTLS with its dev certificate):"
mosquitto_pub --host localhost --port "$port" --cafile "$run/pki/tenant-chain.crt" \
  --cert "$run/pki/devices/device-001.crt" --key "$run/pki/devices/device-001.key" \
  -i device-001 -t v1/devices/me/telemetry -m '{"hello": 1}'
for _ in $(seq 50); do
  $ctl status device-001 2>/dev/null | grep -q "hawkbit:      registered" && break
  sleep 0.1
done
echo "\$ devicegate-ctl status device-001"
$ctl status device-001 || true
echo "\$ curl -s http://127.0.0.1:$tb_port/_fake/state   (the fake ThingsBoard)"
curl -s "http://127.0.0.1:$tb_port/_fake/state"; echo
echo "\$ curl -s http://127.0.0.1:$hb_port/_fake/state   (the fake hawkBit)"
curl -s "http://127.0.0.1:$hb_port/_fake/state"; echo

cat <<MSG

DeviceGate local tenant broker: mqtts://localhost:$port (config: run/mosquitto.conf)

Connect a device (step 5 of the enrollment guide; the client id must be the certificate's CN):
  mosquitto_pub --host localhost --port $port \\
    --cafile $run/pki/tenant-chain.crt \\
    --cert $run/pki/devices/device-001.crt --key $run/pki/devices/device-001.key \\
    -i device-001 -t v1/devices/me/telemetry -m '{"test": 1}'

Revoke device-001 at once through Redis (disconnected within ~100 ms), see it, undo it:
  build/ctl/devicegate-ctl --redis redis://127.0.0.1:$redis_port revoke device-001 --reason test
  build/ctl/devicegate-ctl --redis redis://127.0.0.1:$redis_port status device-001
  build/ctl/devicegate-ctl --redis redis://127.0.0.1:$redis_port unrevoke device-001

Read the plugin's statistics (\$SYS, every 10 s) as the service identity svc-monitor:
  mosquitto_sub --host localhost --port $port --cafile $run/pki/tenant-chain.crt \\
    --cert $run/pki/devices/svc-monitor.crt --key $run/pki/devices/svc-monitor.key \\
    -i svc-monitor -t '\$SYS/broker/devicegate/#' -v

Revoke device-002 with a new CRL (the plugin loads it within a second and kicks the device):
  scripts/dev-revoke.sh device-002

Enroll another device (the guide's steps 1-4; the key never leaves run/device-101):
  build/ctl/devicegate-ctl --redis redis://127.0.0.1:$redis_port enroll-token device-101 > run/t
  scripts/enroll-device.sh --api $api --id device-101 --out run/device-101 \\
    --cacert run/pki/tenant-chain.crt --token-file run/t

Is a worker reading the jobs? Do Redis, ThingsBoard and hawkBit agree (the worker's settings)?
  $ctl workers
  env \$(<run/worker.env) build/ctl/devicegate-ctl reconcile --worker-config config/devicegate-worker.conf.example

Running: redis-server :$redis_port, fake ThingsBoard :$tb_port, fake hawkBit :$hb_port,
devicegate-worker (metrics http://127.0.0.1:$metrics_port/metrics), mosquitto :$port,
devicegate-bridge $api (embedded CA; CRL at $api/crl).
Logs: run/{mosquitto,worker,fakes,redis,bridge}.log   Dead letters: $ctl dlq list
Ctrl-C stops everything.
MSG
wait "${pids[3]}"
