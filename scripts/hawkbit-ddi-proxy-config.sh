#!/usr/bin/env bash
# Renders config/hawkbit-ddi-proxy.nginx.conf.example for a tenant PKI directory.
#   hawkbit-ddi-proxy-config.sh PKI_DIR HAWKBIT_HOST:PORT [LISTEN] [TENANT] > hawkbit-ddi.conf
# PKI_DIR holds subca.crt, tenant-chain.crt, server-chain.crt, server.key and
# ddi-proxy-crls.pem (the CRLs of the Sub-CA, the ICA and the root, concatenated).
# Prints the issuer hash to configure in hawkBit on stderr.
set -euo pipefail
pki=${1:?usage: hawkbit-ddi-proxy-config.sh PKI_DIR HAWKBIT_HOST:PORT [LISTEN] [TENANT]}
upstream=${2:?usage: hawkbit-ddi-proxy-config.sh PKI_DIR HAWKBIT_HOST:PORT [LISTEN] [TENANT]}
listen=${3:-8443}
tenant=${4:-DEFAULT}
here=$(dirname "$(readlink -f "$0")")
template=$here/../config/hawkbit-ddi-proxy.nginx.conf.example
pki=$(readlink -f "$pki")
for f in subca.crt tenant-chain.crt server-chain.crt server.key ddi-proxy-crls.pem; do
    [[ -r $pki/$f ]] || { echo "hawkbit-ddi-proxy-config: $pki/$f is missing or unreadable" >&2; exit 1; }
done
[[ $tenant =~ ^[A-Za-z0-9_-]+$ ]] || { echo "hawkbit-ddi-proxy-config: tenant '$tenant' must be [A-Za-z0-9_-]+" >&2; exit 1; }
# The Sub-CA's subject as nginx prints a certificate's issuer: RFC 2253, the same OpenSSL call.
dn=$(openssl x509 -in "$pki/subca.crt" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
# The value hawkBit compares (case-insensitively) with authentication.header.authority: any
# agreed string works; the Sub-CA certificate's SHA-256 fingerprint names exactly one CA.
hash=$(openssl x509 -in "$pki/subca.crt" -noout -fingerprint -sha256 | sed 's/^.*=//' | tr -d ':' | tr 'A-F' 'a-f')
# nginx map keys are quoted strings: a DN with a quote or backslash cannot be pinned this way.
[[ $dn == *'"'* || $dn == *'\'* ]] && { echo "hawkbit-ddi-proxy-config: Sub-CA subject contains a quote or backslash: $dn" >&2; exit 1; }
escape() { printf '%s' "$1" | sed 's/[&|]/\\&/g'; }
sed -e "s|@SUBCA_ISSUER_DN@|$(escape "$dn")|g" -e "s|@SUBCA_ISSUER_HASH@|$hash|g" \
    -e "s|@HAWKBIT_UPSTREAM@|$(escape "$upstream")|g" -e "s|@LISTEN@|$(escape "$listen")|g" \
    -e "s|@TENANT@|$tenant|g" -e "s|@PKI_DIR@|$(escape "$pki")|g" "$template"
echo "hawkBit: authentication.header.enabled=true, authentication.header.authority=$hash" >&2
