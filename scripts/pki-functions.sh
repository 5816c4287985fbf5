# Shell functions for building PKIs with the openssl CLI (P-256 everywhere). Sourced by
# tests/pki/make-test-pki.sh (the test PKI) and scripts/make-dev-pki.sh (the local stack's).
# Run them in the PKI directory; each CA gets an `openssl ca` database under db/<name>/.

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# An `openssl ca` database per CA so that revocation and CRLs work (and `openssl ocsp -index`
# can use the same index later).
ca_conf() { # name
    mkdir -p "db/$1"
    : > "db/$1/index.txt"
    echo 1000 > "db/$1/crlnumber"
    cat > "db/$1/ca.cnf" <<CNF
[ ca ]
default_ca = this
[ this ]
dir = $PWD/db/$1
database = \$dir/index.txt
new_certs_dir = \$dir
certificate = $PWD/$1.crt
private_key = $PWD/$1.key
crlnumber = \$dir/crlnumber
default_md = sha256
default_days = 3650
default_crl_days = 3650
policy = any
unique_subject = no
copy_extensions = none
rand_serial = yes
[ any ]
commonName = supplied
organizationName = optional
[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_device ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:\${ENV::SAN}
[ v3_device_cdp ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:\${ENV::SAN}
crlDistributionPoints = URI:http://127.0.0.1:9/subca-a.crl
[ v3_ocsp ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = OCSPSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_device_nosan ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_server_eku ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:\${ENV::SAN}
[ v3_leaf_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, keyCertSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:\${ENV::SAN}
[ v3_server ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:localhost, IP:127.0.0.1
CNF
}

ca() { # ca-name args... (batch mode)
    SAN=${SAN:-unused} openssl ca -batch -notext -config "db/$1/ca.cnf" "${@:2}" 2>/dev/null
}

self_signed_ca() { # name subject
    key "$1.key"
    openssl req -new -x509 -key "$1.key" -subj "$2" -days 3650 -sha256 -out "$1.crt" \
        -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
    ca_conf "$1"
}

sub_ca() { # name subject issuer
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    ca "$3" -in "$1.csr" -out "$1.crt" -extensions v3_ca
    rm "$1.csr"
    ca_conf "$1"
}

device() { # issuer name cn [extensions] [extra openssl ca args...]
    local issuer=$1 name=$2 cn=$3 ext=${4:-v3_device}
    key "devices/$name.key"
    openssl req -new -key "devices/$name.key" -subj "/CN=$cn/O=DeviceGate test" -out "devices/$name.csr" 2>/dev/null
    SAN=${SAN:-$cn} ca "$issuer" -in "devices/$name.csr" -out "devices/$name.crt" -extensions "$ext" "${@:5}"
    rm "devices/$name.csr"
}

