#!/usr/bin/env bash
# Generates the test PKI with the openssl CLI (P-256 everywhere):
#   Root -> ICA -> tenant Sub-CA A (ours) and Sub-CA B (another tenant),
#   a second, unrelated Root, a broker server certificate, device certificates for every
#   admit and refusal case, and CRLs (including a stale one and a forged one).
# Usage: make-test-pki.sh DIR   (does nothing if DIR holds this version of the PKI)
set -euo pipefail
source "$(dirname "$(readlink -f "$0")")/../../scripts/pki-functions.sh"
dir=${1:?usage: make-test-pki.sh DIR}
pki_version=3  # bump when what this script generates changes: older build trees regenerate
[[ "$(cat "$dir/.complete" 2>/dev/null)" == "$pki_version" ]] && exit 0
rm -rf "$dir"
mkdir -p "$dir/devices"
cd "$dir"

self_signed_ca root "/CN=DeviceGate Test Root/O=Provider"
sub_ca ica "/CN=DeviceGate Test ICA/O=Provider" root
sub_ca subca-a "/CN=Tenant A Sub-CA/O=Tenant A" ica
sub_ca subca-b "/CN=Tenant B Sub-CA/O=Tenant B" ica
self_signed_ca other-root "/CN=Unrelated Root/O=Elsewhere"
sub_ca other-subca "/CN=Unrelated Sub-CA/O=Elsewhere" other-root
# A CA that copies Sub-CA A's name and key identifier but has its own key: its CRLs and
# the certificates it issues look like Sub-CA A's until a signature is checked.
skid=$(openssl x509 -in subca-a.crt -noout -ext subjectKeyIdentifier | tail -n 1 | tr -d ' ')
key forged-subca-a.key
openssl req -new -x509 -key forged-subca-a.key -subj "/CN=Tenant A Sub-CA/O=Tenant A" -days 3650 -sha256 \
    -out forged-subca-a.crt -addext "basicConstraints=critical,CA:true" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -addext "subjectKeyIdentifier=$skid" 2>/dev/null
ca_conf forged-subca-a

cat subca-a.crt ica.crt root.crt > tenant-a-chain.crt   # the broker listener's cafile
cat subca-a.crt ica.crt > tenant-a-intermediates.crt

key server.key
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
ca ica -in server.csr -out server.crt -extensions v3_server
cat server.crt ica.crt > server-chain.crt
rm server.csr

for n in dev-001 dev-002 dev-003 dev-004 dev-005 dev-sub dev-revoked; do device subca-a "$n" "$n"; done
SAN=dev-001 device subca-a dev-001-renewed dev-001
device subca-a dev-nosan dev-nosan v3_device_nosan
device subca-b tenant-b-dev tenant-b-dev
device other-subca foreign-dev foreign-dev
device subca-a dev-expired dev-expired v3_device -startdate 200101000000Z -enddate 210101000000Z
device subca-a dev-future dev-future v3_device -startdate 350101000000Z -enddate 360101000000Z
device subca-a dev-eku dev-eku v3_server_eku
device subca-a dev-ca dev-ca v3_leaf_ca
device forged-subca-a dev-forged dev-forged
device subca-a dev-cdp dev-cdp v3_device_cdp
# OCSP responders for Sub-CA A: a delegated one (id-kp-OCSPSigning) and one without the EKU.
device subca-a ocsp-responder ocsp-responder v3_ocsp
device subca-a ocsp-noeku ocsp-noeku v3_device_nosan
device subca-a ocsp-expired ocsp-expired v3_ocsp -startdate 200101000000Z -enddate 210101000000Z
SAN=dev-bad device subca-a dev-bad-cn 'dev\+bad#1'
SAN=someone-else device subca-a dev-san-mismatch dev-san-mismatch
key devices/dev-self.key
openssl req -new -x509 -key devices/dev-self.key -subj "/CN=dev-self" -days 3650 -out devices/dev-self.crt 2>/dev/null

# Chains as a device would present them (leaf + its Sub-CA + ICA): another tenant's device
# gets through mosquitto's own TLS check this way.
cat devices/tenant-b-dev.crt subca-b.crt ica.crt > devices/tenant-b-dev-chain.crt
cat devices/foreign-dev.crt other-subca.crt > devices/foreign-dev-chain.crt

# CRLs. Sub-CA A: dev-revoked revoked; then a second CRL that also revokes dev-002.
ca subca-a -revoke devices/dev-revoked.crt -crl_reason keyCompromise
ca subca-a -gencrl -out subca-a.crl.pem
# Dated 2035, listing only dev-revoked: once in force, every correct CRL after it looks older.
ca subca-a -gencrl -crl_lastupdate 350101000000Z -crl_nextupdate 360101000000Z -out subca-a-future.crl.pem
ca subca-a -revoke devices/dev-002.crt -crl_reason keyCompromise
ca subca-a -gencrl -out subca-a-revokes-dev-002.crl.pem
openssl crl -in subca-a-revokes-dev-002.crl.pem -outform DER -out subca-a-revokes-dev-002.crl.der
ca subca-a -gencrl -crl_lastupdate 200101000000Z -crl_nextupdate 200201000000Z -out subca-a-stale.crl.pem
ca subca-b -gencrl -out subca-b.crl.pem
ca forged-subca-a -gencrl -out subca-a-forged.crl.pem
ca ica -gencrl -out ica.crl.pem
ca ica -revoke subca-a.crt -crl_reason cACompromise
ca ica -gencrl -out ica-revokes-subca-a.crl.pem
ca root -gencrl -out root.crl.pem

echo "$pki_version" > .complete
