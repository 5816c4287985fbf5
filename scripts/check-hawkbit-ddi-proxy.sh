#!/usr/bin/env bash
# Validates config/hawkbit-ddi-proxy.nginx.conf.example: renders it for the test PKI, checks it
# with `nginx -t`, then runs it in front of a header-echoing stand-in for hawkBit and sends
# device requests through it with openssl s_client (tenant devices, another tenant's device,
# a revoked, an expired and an unrelated certificate, no certificate, spoofed headers).
#   scripts/check-hawkbit-ddi-proxy.sh [TEST_PKI_DIR]   (default build/test-pki; made if absent)
# Needs nginx (Debian package nginx) and openssl. Exit status 0 = every check held.
set -euo pipefail
root=$(dirname "$(readlink -f "$0")")/..
pki_src=$(readlink -f "${1:-$root/build/test-pki}")
command -v nginx >/dev/null || { echo "check-hawkbit-ddi-proxy: nginx is not installed (apt-get install nginx)" >&2; exit 1; }
"$root/tests/pki/make-test-pki.sh" "$pki_src"
tmp=$(mktemp -d)
cleanup() {
    [[ -s $tmp/nginx.pid ]] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# The tenant PKI directory the proxy expects.
mkdir -p "$tmp/pki"
cp "$pki_src/subca-a.crt" "$tmp/pki/subca.crt"
cp "$pki_src/tenant-a-chain.crt" "$tmp/pki/tenant-chain.crt"
cp "$pki_src/server-chain.crt" "$pki_src/server.key" "$tmp/pki/"
# Tenant B's CRL too: without it nginx already fails tenant B's devices in the handshake
# ("unable to get certificate CRL"), and the check below would not reach the Sub-CA pinning.
cat "$pki_src/subca-a.crl.pem" "$pki_src/subca-b.crl.pem" "$pki_src/ica.crl.pem" "$pki_src/root.crl.pem" \
    > "$tmp/pki/ddi-proxy-crls.pem"
hash=$(openssl x509 -in "$pki_src/subca-a.crt" -noout -fingerprint -sha256 | sed 's/^.*=//' | tr -d ':' | tr 'A-F' 'a-f')

failures=0
check() {  # check NAME EXPECTED ACTUAL
    if [[ $3 == *"$2"* ]]; then
        echo "ok   $1"
    else
        echo "FAIL $1: expected '$2' in: $3" >&2
        failures=$((failures + 1))
    fi
}

start_nginx() {  # start_nginx PORT: 0 if nginx runs
    local port=$1 echo_port=$(($1 + 1))
    "$root/scripts/hawkbit-ddi-proxy-config.sh" "$tmp/pki" "127.0.0.1:$echo_port" "127.0.0.1:$port" DEFAULT \
        > "$tmp/hawkbit-ddi.conf" 2>/dev/null
    cat > "$tmp/nginx.conf" <<CONF
pid $tmp/nginx.pid;
error_log $tmp/error.log info;
events { worker_connections 64; }
http {
    access_log $tmp/access.log;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    # Stand-in for hawkBit: echoes the headers its SecurityHeaderAuthenticator reads.
    server {
        listen 127.0.0.1:$echo_port;
        location / {
            return 200 "uri=\$uri cn=\$http_x_ssl_client_cn hash1=\$http_x_ssl_issuer_hash_1 hash2=\$http_x_ssl_issuer_hash_2 xff=\$http_x_forwarded_for\n";
        }
    }
    include $tmp/hawkbit-ddi.conf;
}
CONF
    nginx -t -q -p "$tmp" -e "$tmp/error.log" -c "$tmp/nginx.conf" || return 2
    nginx -p "$tmp" -e "$tmp/error.log" -c "$tmp/nginx.conf" 2>>"$tmp/start.log"
}

port=0
for attempt in 1 2 3 4 5; do  # a busy port is retried on another one
    candidate=$((20000 + (RANDOM % 20000) * 2))
    rc=0
    start_nginx "$candidate" || rc=$?
    [[ $rc -eq 2 ]] && { echo "FAIL nginx -t refused the rendered configuration:" >&2; cat "$tmp/error.log" >&2; exit 1; }
    if [[ $rc -eq 0 ]]; then
        port=$candidate
        break
    fi
done
[[ $port -ne 0 ]] || { echo "FAIL nginx did not start:" >&2; cat "$tmp/start.log" "$tmp/error.log" >&2; exit 1; }
echo "ok   nginx -t accepts the rendered configuration"

request() {  # request CERT KEY PATH [CHAIN] [EXTRA_HEADERS]: the status line and body
    local args=(-connect "127.0.0.1:$port" -CAfile "$pki_src/root.crt" -quiet -ign_eof)
    [[ -n $1 ]] && args+=(-cert "$1" -key "$2")
    [[ -n ${4:-} ]] && args+=(-cert_chain "$4")
    printf 'GET %s HTTP/1.1\r\nHost: ddi\r\n%bConnection: close\r\n\r\n' "$3" "${5:-}" |
        timeout 10 openssl s_client "${args[@]}" 2>/dev/null | tr -d '\r' | sed -n '1p;$p' | tr '\n' ' ' || true
}
dev=$pki_src/devices

r=$(request "$dev/dev-001.crt" "$dev/dev-001.key" /DEFAULT/controller/v1/dev-001)
check "a tenant device reaches its own controller resource" "HTTP/1.1 200" "$r"
check "hawkBit sees the certificate's CN" "cn=dev-001 " "$r"
check "hawkBit sees the tenant Sub-CA's issuer hash" "hash1=$hash hash2= " "$r"
r=$(request "$dev/dev-001.crt" "$dev/dev-001.key" /DEFAULT/controller/v1/dev-001/deploymentBase/7)
check "and the resources below it" "HTTP/1.1 200" "$r"
r=$(request "$dev/dev-001.crt" "$dev/dev-001.key" /DEFAULT/controller/v1/dev-001 "" \
    'X-Ssl-Client-Cn: dev-002\r\nX-Ssl-Issuer-Hash-1: forged\r\nX-Ssl-Issuer-Hash-2: forged\r\nX-Forwarded-For: 198.51.100.9\r\n')
check "client-sent authentication headers are replaced or removed" "cn=dev-001 hash1=$hash hash2= xff=127.0.0.1" "$r"
r=$(request "$dev/dev-001.crt" "$dev/dev-001.key" /DEFAULT/controller/v1/dev-002)
check "another device's controller resource is refused" "HTTP/1.1 403" "$r"
r=$(request "$dev/dev-001.crt" "$dev/dev-001.key" /DEFAULT/controller/v1/dev-0011)
check "a controllerId that only starts with the CN is refused" "HTTP/1.1 403" "$r"
r=$(request "$dev/dev-001.crt" "$dev/dev-001.key" /OTHER/controller/v1/dev-001)
check "another hawkBit tenant is refused" "HTTP/1.1 403" "$r"
r=$(request "$dev/tenant-b-dev.crt" "$dev/tenant-b-dev.key" /DEFAULT/controller/v1/tenant-b-dev "$pki_src/subca-b.crt")
check "a device of another tenant under the same ICA is refused" "HTTP/1.1 403" "$r"
r=$(request "$dev/dev-revoked.crt" "$dev/dev-revoked.key" /DEFAULT/controller/v1/dev-revoked)
check "a revoked certificate is refused" "HTTP/1.1 400" "$r"
r=$(request "$dev/dev-expired.crt" "$dev/dev-expired.key" /DEFAULT/controller/v1/dev-expired)
check "an expired certificate is refused" "HTTP/1.1 400" "$r"
r=$(request "$dev/foreign-dev.crt" "$dev/foreign-dev.key" /DEFAULT/controller/v1/foreign-dev "$pki_src/other-subca.crt")
check "an unrelated PKI's certificate is refused" "HTTP/1.1 400" "$r"
r=$(request "" "" /DEFAULT/controller/v1/dev-001)
check "a request without a certificate is refused" "HTTP/1.1 400" "$r"

if [[ $failures -ne 0 ]]; then
    echo "check-hawkbit-ddi-proxy: $failures check(s) failed; nginx log:" >&2
    cat "$tmp/error.log" >&2
    exit 1
fi
echo "check-hawkbit-ddi-proxy: all checks held"
