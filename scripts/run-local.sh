#!/usr/bin/env bash
# Runs a local tenant broker: installs what is missing, builds, creates a dev PKI under
# run/pki, writes run/mosquitto.conf from config/mosquitto.conf.example, and starts
# mosquitto with the DeviceGate plugin in the foreground (Ctrl-C stops it).
# DEVICEGATE_PORT overrides the port (default 8883, on 127.0.0.1 only).
set -euo pipefail
root="$(dirname "$(readlink -f "$0")")/.."
cd "$root"
root=$PWD
port=${DEVICEGATE_PORT:-8883}
scripts/setup-debian.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target devicegate_plugin
run=$root/run
mkdir -p "$run/data"
scripts/make-dev-pki.sh "$run/pki"

# The example config with this machine's paths: what is tested here is what operators copy.
sed -e "s|/etc/devicegate/pki|$run/pki|g" \
    -e "s|/usr/lib/mosquitto/devicegate.so|$root/build/plugin/devicegate.so|" \
    -e "s|/var/lib/mosquitto/|$run/data/|" \
    -e "s|^listener 8883$|listener $port 127.0.0.1|" \
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

Revoke device-002 (new CRL; the plugin loads it within a second and kicks the device):
  scripts/dev-revoke.sh device-002

Starting mosquitto (Ctrl-C to stop)...
MSG
exec mosquitto -c "$run/mosquitto.conf"
