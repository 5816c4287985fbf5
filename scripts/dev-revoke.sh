#!/usr/bin/env bash
# Revokes a device of the local dev PKI (run/pki) and writes a new Sub-CA CRL, which the
# running broker's plugin picks up by itself (plugin_opt_crl_poll_interval).
set -euo pipefail
device=${1:?usage: dev-revoke.sh DEVICE-ID}
pki="$(dirname "$(readlink -f "$0")")/../run/pki"
cd "$pki"
export SAN=unused  # referenced by the CA config's extension sections
openssl ca -config db/subca/ca.cnf -revoke "devices/$device.crt" -crl_reason keyCompromise
openssl ca -config db/subca/ca.cnf -gencrl -out subca.crl.pem.new
mv subca.crl.pem.new subca.crl.pem   # atomic replace: the plugin never reads half a file
echo "revoked $device; new CRL written to $pki/subca.crl.pem"
