#!/usr/bin/env bash
# A development PKI for the local tenant stack, shaped like production:
#   provider Root -> provider ICA -> tenant Sub-CA -> devices (device-001, device-002) and the
#   service svc-monitor
# plus the broker's server certificate and the Sub-CA's CRL.
# Usage: make-dev-pki.sh DIR   (keeps an existing PKI; delete DIR to start over)
set -euo pipefail
source "$(dirname "$(readlink -f "$0")")/pki-functions.sh"
dir=${1:?usage: make-dev-pki.sh DIR}
[[ -f "$dir/.complete" ]] && exit 0
rm -rf "$dir"
mkdir -p "$dir/devices"
cd "$dir"

self_signed_ca root "/CN=Provider Root CA (dev)/O=Provider"
sub_ca ica "/CN=Provider ICA (dev)/O=Provider" root
sub_ca subca "/CN=Tenant Sub-CA (dev)/O=Tenant" ica
cat subca.crt ica.crt root.crt > tenant-chain.crt   # the listener's cafile, and ca-chain.crt for devices

key server.key
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
ca ica -in server.csr -out server.crt -extensions v3_server
cat server.crt ica.crt > server-chain.crt
rm server.csr

for n in device-001 device-002; do device subca "$n" "$n"; done
device subca svc-monitor svc-monitor  # a service identity: reads $SYS/broker/devicegate/ (run-local.sh)
ca subca -gencrl -out subca.crl.pem
touch .complete
