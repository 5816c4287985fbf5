#!/usr/bin/env bash
# Device-side enrollment against devicegate-bridge, as the guide's bootstrap container does:
# the key is made on the device with openssl and never leaves it; the CSR goes to
# POST {api}/devices/{id}/enroll with the one-time token; certificate, CA chain and WireGuard
# config are saved; an "enrolled" marker makes later runs skip (idempotent).
#
#   scripts/enroll-device.sh --api URL --id DEVICE-ID [--out DIR] [--cacert FILE]
#                            [--token-file FILE] [--key-type ec|rsa] [--wireguard]
#   environment: DEVICEGATE_API, DEVICEGATE_DEVICE_ID, DEVICEGATE_ENROLL_TOKEN (or --token-file /
#   DEVICEGATE_ENROLL_TOKEN_FILE), DEVICEGATE_OUT (default /certs), DEVICEGATE_CACERT
#   --wireguard: make the WireGuard key on the device too (wg genkey) and send only its public key
#
# Outputs in DIR: device.key (0600), device.csr, device.crt, ca-chain.crt, wg0.conf, enrolled.
# Exit codes (sysexits.h, so a restart policy can tell them apart):
#   0 enrolled, or already enrolled     64 usage            65 bad request or answer (do not retry)
#   69 API unreachable (retry)          73 cannot write DIR  75 rate limited / server busy (retry)
#   77 refused: token missing, used, expired or for another device (needs a new token)
set -uo pipefail

api=${DEVICEGATE_API:-}
id=${DEVICEGATE_DEVICE_ID:-}
out=${DEVICEGATE_OUT:-/certs}
cacert=${DEVICEGATE_CACERT:-}
token_file=${DEVICEGATE_ENROLL_TOKEN_FILE:-}
key_type=ec
wireguard=0

usage() { sed -n '6,10p' "$0" >&2; exit 64; }
die() { echo "enroll-device: $2" >&2; exit "$1"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --api) api=${2:-}; shift 2 ;;
    --id) id=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    --cacert) cacert=${2:-}; shift 2 ;;
    --token-file) token_file=${2:-}; shift 2 ;;
    --key-type) key_type=${2:-}; shift 2 ;;
    --wireguard) wireguard=1; shift ;;
    -h|--help) usage ;;
    *) echo "enroll-device: unknown argument $1" >&2; usage ;;
  esac
done
[[ -n $api && -n $id ]] || usage
[[ $id =~ ^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$ ]] || die 64 "\"$id\" is not a device id ([A-Za-z0-9][A-Za-z0-9._:@-]{0,127})"
[[ $key_type == ec || $key_type == rsa ]] || die 64 "--key-type must be ec or rsa"

if [[ -f $out/enrolled ]]; then
  echo "enroll-device: $id is already enrolled ($out/enrolled exists); nothing to do"
  exit 0
fi
token=${DEVICEGATE_ENROLL_TOKEN:-}
if [[ -n $token_file ]]; then token=$(tr -d '\r\n' < "$token_file") || die 64 "cannot read $token_file"; fi
[[ -n $token ]] || die 64 "no enrollment token (DEVICEGATE_ENROLL_TOKEN or --token-file)"

umask 077
mkdir -p "$out" && [[ -w $out ]] || die 73 "cannot write to $out"
work=$(mktemp -d "$out/.enroll.XXXXXX") || die 73 "cannot write to $out"
trap 'rm -rf "$work"' EXIT

# A key from an interrupted run is reused: the device's identity stays the same.
if [[ ! -s $out/device.key ]]; then
  if [[ $key_type == ec ]]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/device.key" 2>/dev/null
  else
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$work/device.key" 2>/dev/null
  fi || die 73 "openssl could not make a key"
  mv "$work/device.key" "$out/device.key" || die 73 "cannot write $out/device.key"
fi
openssl req -new -key "$out/device.key" -subj "/CN=$id" -out "$out/device.csr" 2>/dev/null || die 73 "openssl could not make the CSR"

# The JSON body: PEM holds only base64, '-', ' ' and newlines, so escaping newlines suffices.
{
  printf '{"csr_pem":"'
  awk '{printf "%s\\n", $0}' "$out/device.csr"
  printf '"'
  if [[ $wireguard == 1 ]]; then
    command -v wg >/dev/null || die 64 "--wireguard needs wg (Debian: wireguard-tools)"
    [[ -s $out/wg.key ]] || wg genkey > "$out/wg.key"
    printf ',"wireguard_public_key":"%s"' "$(wg pubkey < "$out/wg.key")"
  fi
  printf '}'
} > "$work/body.json"
# The token goes in a header file: it never appears on a command line (ps).
printf 'Authorization: Bearer %s\n' "$token" > "$work/auth"

curl_args=(-s -S -o "$work/response.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json'
           -H "@$work/auth" --data-binary "@$work/body.json" --max-time 60)
[[ -n $cacert ]] && curl_args+=(--cacert "$cacert")
status=$(curl "${curl_args[@]}" "$api/devices/$id/enroll") || die 69 "$api is unreachable"

error=$(python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get("error",""))
except Exception: print("")' "$work/response.json" 2>/dev/null)
case $status in
  200) ;;
  401|403) die 77 "refused ($status $error): ask the operator for a new token (devicegate-ctl enroll-token $id)" ;;
  429|502|503) die 75 "the API is busy ($status $error); retry later" ;;
  *) die 65 "the API answered $status ${error:-(no error code)}" ;;
esac

python3 - "$work" "$out" <<'PY' || die 65 "the answer is not the expected JSON"
import json, os, sys
work, out = sys.argv[1], sys.argv[2]
d = json.load(open(os.path.join(work, "response.json")))
files = {"device.crt": d["certificate_pem"], "ca-chain.crt": d["ca_chain_pem"], "wg0.conf": d["wireguard_config"]}
if os.path.exists(os.path.join(out, "wg.key")):
    key = open(os.path.join(out, "wg.key")).read().strip()
    files["wg0.conf"] = files["wg0.conf"].replace("# PrivateKey: the device's own (it never left the device)", "PrivateKey = " + key)
for name, text in files.items():
    with open(os.path.join(work, name), "w") as f:
        f.write(text)
    os.replace(os.path.join(work, name), os.path.join(out, name))
PY
openssl verify -CAfile "$out/ca-chain.crt" "$out/device.crt" >/dev/null 2>&1 || die 65 "the certificate does not verify against the returned chain"
date -u +%Y-%m-%dT%H:%M:%SZ > "$out/enrolled"
echo "enroll-device: $id enrolled; files in $out"
