#!/usr/bin/env bash
# A root CA key update (RFC 4210 §4.4, answered by genm id-it-rootCaCert, RFC 9483 §4.3.2) for the
# demo PKI in DIR (deploy/demo-pki.sh): a new root key and the certificates of RootCaKeyUpdateContent.
#
#   newroot.pem/.key   newWithNew: the new self-signed root "cmpgw demo root CA G2"
#   newwithold.pem     newWithOld: the new root's key certified by the old root (ca.pem, ca.key)
#   oldwithnew.pem     oldWithNew: the old root's key certified by the new root
set -euo pipefail
cd "$1"
umask 077

ca_ext='basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash'
old_subj='/O=cmpgw demo/CN=cmpgw demo root CA'
new_subj='/O=cmpgw demo/CN=cmpgw demo root CA G2'

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out newroot.key 2>/dev/null
printf '%b\n' "$ca_ext" > rootupd-self.ext
printf '%b\nauthorityKeyIdentifier=keyid\n' "$ca_ext" > rootupd-link.ext
openssl req -new -key newroot.key -subj "$new_subj" -out newroot.csr 2>/dev/null
openssl x509 -req -in newroot.csr -signkey newroot.key -days 3650 -sha256 -extfile rootupd-self.ext \
    -set_serial "0x$(openssl rand -hex 16)" -out newroot.pem 2>/dev/null
openssl x509 -req -in newroot.csr -CA ca.pem -CAkey ca.key -days 3650 -sha256 -extfile rootupd-link.ext \
    -set_serial "0x$(openssl rand -hex 16)" -out newwithold.pem 2>/dev/null
openssl req -new -key ca.key -subj "$old_subj" -out oldroot.csr 2>/dev/null
openssl x509 -req -in oldroot.csr -CA newroot.pem -CAkey newroot.key -days 3650 -sha256 \
    -extfile rootupd-link.ext -set_serial "0x$(openssl rand -hex 16)" -out oldwithnew.pem 2>/dev/null
rm -f newroot.csr oldroot.csr rootupd-self.ext rootupd-link.ext
