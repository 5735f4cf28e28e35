#!/usr/bin/env bash
# Creates a demo PKI and a gateway configuration in DIR (default build/demo), unless one is there.
#
#   ca.pem            demo root CA: the one trust anchor a client needs (TLS server certificate,
#                     CMP response signer and issued certificates all chain to it)
#   issuing.pem/.key  issuing CA of the local upstream (pathlen 0), signed by the root
#   signer.pem/.key   the gateway's CMP response signer (digitalSignature, id-kp-cmcRA)
#   server.pem/.key   TLS server certificate for 127.0.0.1, ::1 and localhost
#   client.pem/.key   a client certificate accepted for TLS and for CMP signature protection
#   pbm.ref/.secret   a PBM reference (senderKID) and secret accepted on /pki/cmp
#   admin.token       the bearer token of POST /reload on the admin listener (mode 0600)
#   store/            the local upstream's inventory (mode 0700): every certificate it issues, and
#                     the revocations of an rr, so that its certificates can be revoked
#   cmpgw.json        the gateway configuration (port from CMPGW_PORT, default 8443; the admin
#                     listener's from CMPGW_ADMIN_PORT, default 8444); its audit log goes to
#                     audit.log beside it. Its one role issues what a device of the demo needs and
#                     no more: a subject "/O=cmpgw demo/CN=device<...>" (no dot), DNS SANs
#                     under demo.example (a name reserved for examples, RFC 2606), no IP or URI
#                     SANs. It grants serverAuth, so the CN a TLS client may take as a host name
#                     is named (allowed_common_names): not localhost
#
# Keys are EC P-256. Nothing here is fit for production: the keys sit unencrypted on disk.
set -euo pipefail

dir=${1:-build/demo}
port=${CMPGW_PORT:-8443}
admin_port=${CMPGW_ADMIN_PORT:-8444}
mkdir -p "$dir"
cd "$dir"

# A configuration from before the admin listener's token (and "run_as_root", which a demo started
# as root needs), before the role's bounds on the names it issues (its CNs among them), or before
# the local upstream's store, is rewritten; the PKI is kept.
have_pki=0
if [[ -f ca.pem && -f client.pem && -f pbm.secret && -f issuing.key ]]; then
    have_pki=1
    if [[ -f cmpgw.json && -f admin.token ]] && grep -q '"run_as_root"' cmpgw.json &&
        grep -q '"token_file": "admin.token"' cmpgw.json && grep -q '"allowed_dns_names"' cmpgw.json &&
        grep -q '"allowed_common_names"' cmpgw.json && grep -q '"store": "store"' cmpgw.json &&
        [[ -d store ]]; then
        exit 0
    fi
fi
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# cert NAME SUBJECT ISSUER EXTENSIONS DAYS
cert() {
    local name=$1 subj=$2 issuer=$3 ext=$4 days=$5
    key "$name.key"
    printf '%b\n' "$ext" > "$name.ext"
    openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
    if [[ $issuer == self ]]; then
        openssl x509 -req -in "$name.csr" -signkey "$name.key" -days "$days" -sha256 \
            -extfile "$name.ext" -set_serial "0x$(openssl rand -hex 16)" -out "$name.pem" 2>/dev/null
    else
        openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -days "$days" -sha256 \
            -extfile "$name.ext" -set_serial "0x$(openssl rand -hex 16)" -out "$name.pem" 2>/dev/null
    fi
    rm -f "$name.csr" "$name.ext"
}

make_pki() {
cert ca "/O=cmpgw demo/CN=cmpgw demo root CA" self \
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash" 3650
cert issuing "/O=cmpgw demo/CN=cmpgw demo issuing CA" ca \
    "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid" 1825
cert signer "/O=cmpgw demo/CN=cmpgw demo CMP signer" ca \
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=1.3.6.1.5.5.7.3.28\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid" 825
cert server "/O=cmpgw demo/CN=localhost" ca \
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid" 825
cert client "/O=cmpgw demo/CN=demo-client" ca \
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid" 825

printf 'demo-device' > pbm.ref
openssl rand -hex 16 | tr -d '\n' > pbm.secret
}
[[ $have_pki == 1 ]] || make_pki
# the gateway refuses a token file group or others may read (umask 077 above makes it 0600)
[[ -f admin.token ]] || openssl rand -hex 32 | tr -d '\n' > admin.token
# the issuer refuses a store its group or others may write (umask 077 above makes it 0700)
mkdir -p store

cat > cmpgw.json <<JSON
{
  "listeners": [
    {
      "address": "127.0.0.1",
      "port": $port,
      "tls": {
        "cert": "server.pem",
        "key": "server.key",
        "client_ca": "ca.pem",
        "client_auth": "optional"
      }
    }
  ],
  "signer": { "cert": "signer.pem", "key": "signer.key" },
  "trust": {
    "demo": { "ca_file": "ca.pem", "untrusted_file": "issuing.pem", "revocation": "none" }
  },
  "pbm": {
    "demo-device": { "secret_file": "pbm.secret" }
  },
  "upstreams": {
    "local": { "type": "local", "cert": "issuing.pem", "key": "issuing.key", "chain": "ca.pem", "store": "store" }
  },
  "roles": {
    "default": {
      "upstream": "local",
      "trust": ["demo"],
      "pbm": ["demo-device"],
      "key_usage": ["digitalSignature", "keyAgreement"],
      "ext_key_usage": ["clientAuth", "serverAuth"],
      "allowed_san_types": ["dns"],
      "ttl": "720h",
      "max_ttl": "2160h",
      "implicit_confirm": true,
      "authorization": {
        "allowed_subjects": ["/O=cmpgw demo/CN=*"],
        "allowed_common_names": ["device*"],
        "allowed_dns_names": ["*.demo.example"]
      }
    }
  },
  "default_path_policy": "role:default",
  "label_to_path_policy": { "default": "role:default" },
  "audit": { "file": "audit.log" },
  "admin": { "address": "127.0.0.1", "port": $admin_port, "token_file": "admin.token" },
  "run_as_root": true
}
JSON
chmod 0644 ./*.pem cmpgw.json pbm.ref
