#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a short while on seed corpora.
#   tests/fuzz/run.sh [seconds-per-target]     (CI: 20)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
seconds=${1:-20}
CXX=clang++ cmake -S . -B build-fuzz -DDEVICEGATE_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)"
tests/pki/make-test-pki.sh build-fuzz/test-pki
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus"/{crl,ocsp,config,redis,csr}
cp build-fuzz/test-pki/*.crl.* "$corpus/crl/"
# The per-CA state reads records: [source][seconds][length: 2 bytes][CRL]; one seed holds them all.
mkdir -p "$corpus/crl_state"
i=0
for f in build-fuzz/test-pki/*.crl.*; do
  n=$(stat -c %s "$f")
  { printf '\\x%02x\\x05\\x%02x\\x%02x' $((i % 4)) $((n >> 8 & 255)) $((n & 255)) | xargs -0 printf; cat "$f"; } >> "$corpus/crl_state/1"
  i=$((i + 1))
done
# A real response from `openssl ocsp` (issuer-signed) as the OCSP seed.
pki=build-fuzz/test-pki
openssl ocsp -issuer $pki/subca-a.crt -cert $pki/devices/dev-001.crt -reqout "$corpus/req.der" -no_nonce 2>/dev/null
openssl ocsp -index $pki/db/subca-a/index.txt -rsigner $pki/subca-a.crt -rkey $pki/subca-a.key -CA $pki/subca-a.crt \
    -reqin "$corpus/req.der" -respout "$corpus/ocsp/1" 2>/dev/null || true
printf 'tenant_ca_file /a\nica_file /b\nroot_ca_file /c\ncrl_file /d\nacl_pattern read devices/%%c/#\n' > "$corpus/config/1"
printf 'crl_poll_interval 500ms\nredis_url redis://:pw@h:1/2\nacl_client_pattern m read $SYS/#\n' > "$corpus/config/2"
printf '{"op":"revoke","kind":"serial","value":"0A7A"}' > "$corpus/redis/1"
printf '{"device_id":"d","serial":"0A","fingerprint_sha256":"ab","certificate_pem":"x","first_seen":1,"broker_id":"b"}' > "$corpus/redis/2"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$corpus/k.pem" -subj /CN=dev-1 \
    -out "$corpus/c.pem" 2>/dev/null
{ printf 'dev-1\n{"csr_pem":"'; awk '{printf "%s\\n", $0}' "$corpus/c.pem"; printf '"}'; } > "$corpus/csr/1"
{ printf 'dev-1\n'; cat "$corpus/c.pem"; } > "$corpus/csr/2"
# Job verification: a shape byte (0 = job JSON, 1 = a certificate), then the input.
mkdir -p "$corpus/job"
for c in $pki/devices/dev-001.crt $pki/devices/dev-self.crt $pki/devices/tenant-b-dev.crt $pki/devices/dev-expired.crt; do
  { printf '\001'; cat "$c"; } > "$corpus/job/$(basename "$c").pem"
done
{ printf '\000'; cat "$corpus/redis/2"; } > "$corpus/job/json"
for target in crl crl_state ocsp config redis_payloads csr job_verify; do
  dir=$corpus/${target%%_*}
  [[ $target == crl_state ]] && dir=$corpus/crl_state
  echo "fuzzing $target for ${seconds}s"
  build-fuzz/tests/fuzz/fuzz_$target -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$corpus/" "$dir" 2>&1 | grep -E "^stat::number_of_executed_units|ERROR|SUMMARY" || true
  # libFuzzer exits non-zero and writes a crash-* artifact on a finding.
  if ls "$corpus"/crash-* "$corpus"/leak-* "$corpus"/timeout-* >/dev/null 2>&1; then
    echo "fuzz_$target found a failing input:"; ls "$corpus"/crash-* "$corpus"/leak-* "$corpus"/timeout-* 2>/dev/null
    exit 1
  fi
done
echo "fuzzing: no findings"
