#!/usr/bin/env bash
# `make demo`: a demo PKI in build/demo (made once, reused after), ready-to-paste `openssl cmp`
# commands, then the gateway in the foreground (Ctrl-C stops it).
#
#   deploy/demo.sh BUILD_DIR [DEMO_DIR]
#       BUILD_DIR holds the cmpgw binary (default: build); DEMO_DIR the PKI and configuration
#       (default: build/demo, relative to the repository root)
set -euo pipefail

build=${1:-build}
[[ $build == /* ]] || build="$PWD/$build"
demo=${2:-build/demo}
[[ $demo == /* || -z ${2:-} ]] || demo="$PWD/$demo"
cd "$(dirname "$0")/.."

if [[ ! -x $build/cmpgw ]]; then
    echo "demo: $build/cmpgw not found; run 'make build' first" >&2
    exit 1
fi

deploy/demo-pki.sh "$demo"
port=$(sed -n 's/^ *"port": *\([0-9][0-9]*\).*/\1/p' "$demo/cmpgw.json" | head -n 1)
admin=$(sed -n 's/^ *"admin": {.*"port": *\([0-9][0-9]*\).*/\1/p' "$demo/cmpgw.json" | head -n 1)

# Every command below runs from the repository root; all files live in build/demo.
tls="-tls_used -tls_trusted $demo/ca.pem -tls_cert $demo/client.pem -tls_key $demo/client.key"
srv="-server 127.0.0.1:$port -path pki/cmp -trusted $demo/ca.pem"
sig="-cert $demo/client.pem -key $demo/client.key"
genkey="openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"

# (built here: inside ${admin:+...} in a here-document, bash drops the double quotes)
reload="curl -X POST -H \"Authorization: Bearer \$(cat $demo/admin.token)\" http://127.0.0.1:$admin/reload"

cat <<EOF
cmpgw demo: CMP over HTTPS on https://127.0.0.1:$port/pki/cmp (also /.well-known/cmp)
Trust anchor: $demo/ca.pem. Paste these from the repository root in another terminal.
Role "default" issues the subject /O=cmpgw demo/CN=device<...> (no dot) with DNS SANs under
demo.example, and refuses other names ($demo/cmpgw.json, "authorization").
${admin:+Admin: http://127.0.0.1:$admin/healthz, http://127.0.0.1:$admin/readyz, http://127.0.0.1:$admin/metrics;
reload: $reload
}
# 1. ir (initial registration), protected by a signature with the demo client certificate
$genkey -out $demo/device1.key
openssl cmp -cmd ir $srv \\
    $tls \\
    $sig \\
    -newkey $demo/device1.key -subject "/O=cmpgw demo/CN=device1" -sans "device1.demo.example" \\
    -certout $demo/device1.pem

# 2. ir protected by a password-based MAC (PBM: reference demo-device, secret in $demo/pbm.secret)
$genkey -out $demo/device2.key
openssl cmp -cmd ir $srv \\
    $tls \\
    -ref demo-device -secret file:$demo/pbm.secret \\
    -newkey $demo/device2.key -subject "/O=cmpgw demo/CN=device2" \\
    -certout $demo/device2.pem

# 3. p10cr: a PKCS#10 CSR made with openssl req, sent as is
$genkey -out $demo/device3.key
openssl req -new -key $demo/device3.key -subj "/O=cmpgw demo/CN=device3" -out $demo/device3.csr
openssl cmp -cmd p10cr $srv \\
    $tls \\
    $sig \\
    -csr $demo/device3.csr -certout $demo/device3.pem

# 4. kur (key update) of the certificate from 1, signed with that certificate and its key
$genkey -out $demo/device1-new.key
openssl cmp -cmd kur $srv \\
    $tls \\
    -cert $demo/device1.pem -key $demo/device1.key \\
    -newkey $demo/device1-new.key -certout $demo/device1-new.pem

# Look at a result:
openssl x509 -in $demo/device1.pem -noout -subject -issuer -ext subjectAltName,keyUsage,extendedKeyUsage

Starting the gateway (Ctrl-C stops it): $build/cmpgw -c $demo/cmpgw.json
EOF

exec "$build/cmpgw" -c "$demo/cmpgw.json"
