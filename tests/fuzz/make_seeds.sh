#!/usr/bin/env bash
# Regenerates the fuzzing PKI (tests/fuzz/pki) and the seeds made with it: one CMP request per body
# type as the real clients send them (openssl cmp -reqout, cmpclient --reqout) to a gateway started
# from the demo configuration, into tests/fuzz/corpus/fuzz_cmp_request, _signed and _shim, their
# certificate requests into fuzz_profile, the certificates issued for them into fuzz_issued; and
# configurations naming its files, into fuzz_config.
#
#   tests/fuzz/make_seeds.sh [BUILD_DIR]     (default build/; needs its cmpgw and tests/cmpclient)
#
# The seeds are signed with this PKI and MAC'ed with its PBM secret, and the CMP targets run their
# engine on it at the capture time (pki/capture_time) so that they pass authentication there: the
# PKI and the seeds go together, regenerate and commit both. The grown corpora of fuzz_cmp_request
# and fuzz_cmp_signed are removed: their inputs derive from the old seeds and PKI.
#
# The error message, the ir with a certProfile, the genms with a crlStatusList value and the messages with
# junk extraCerts are crafted (no client sends them on its own): craft_error.py, craft_profile.py,
# craft_crl_status.py, craft_extra_certs.py; so is an rr target with its subjectAltName twice
# (craft_san_twice.py). Sequence seeds (*.seq) hold several requests joined by the
# separator fuzz_cmp_request splits on, so that a certConf, pollReq or error meets the transaction its
# ir opened.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
pki=$repo/tests/fuzz/pki
seeds=$repo/tests/fuzz/corpus/fuzz_cmp_request
shim_seeds=$repo/tests/fuzz/corpus/fuzz_cmp_shim
signed_seeds=$repo/tests/fuzz/corpus/fuzz_cmp_signed
sep=-CMPGW-NEXT-MESSAGE- # FUZZ_SEPARATOR in tests/fuzz/fuzz_engine.h
subject="/O=cmpgw demo/CN=fuzz-device"

for f in "$build/cmpgw" "$build/tests/cmpclient"; do
    [[ -x $f ]] || { echo "make_seeds: $f is missing: run make build first" >&2; exit 1; }
done
work=$(mktemp -d)
gw=""
cleanup() {
    [[ -n $gw ]] && kill "$gw" 2>/dev/null && wait "$gw" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

rm -rf "$pki"
"$repo/deploy/demo-pki.sh" "$pki" >/dev/null
# What the configurations of fuzz_config name besides the demo's (tests/unit/test_config.c has the
# same): a delegate CA, a CRL, an upstream token and HMAC key, a 3GPP allow-list, a store directory.
(
    cd "$pki"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out delegate.key 2>/dev/null
    openssl req -x509 -new -key delegate.key -CA ca.pem -CAkey ca.key -subj "/O=cmpgw demo/CN=fuzz delegate" \
        -days 3650 -addext basicConstraints=critical,CA:TRUE,pathlen:0 \
        -addext keyUsage=critical,keyCertSign,cRLSign -addext nameConstraints=critical,permitted\;DNS:example.com \
        -out delegate.pem 2>/dev/null
    printf '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\ncrlnumber=crlnumber\ndefault_md=sha256\n' >crl.cnf
    : >index.txt
    echo 01 >crlnumber
    for ca in ca issuing; do
        openssl ca -config crl.cnf -gencrl -keyfile $ca.key -cert $ca.pem -crldays 36500 2>/dev/null
    done >ca.crl
    rm -f crl.cnf index.txt* crlnumber*
    printf 's.fuzz-not-a-token\n' >vault.token
    printf '00112233445566778899aabbccddeeff\n' >hmac.key
    # deploy/examples/3gpp.json's role trusts two entries: each line names the one its device chains to
    printf 'trust:vendor /O=cmpgw demo/CN=demo-client\ntrust:vendor serial:01ab\n' >enb.allow
    printf '/O=cmpgw demo/CN=demo-client\nserial:01ab\n' >demo.allow
    mkdir -p store
    touch store/.keep
    chmod 0600 delegate.key vault.token hmac.key
)
rm -f "$pki/ca.key" # the root's key signs nothing at fuzzing time: keep it out of the repository
cp -a "$pki/." "$work/"
port=$(/usr/bin/python3 -c \
    'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# A second role whose upstream is slower than its poll_after, for a real pollReq.
/usr/bin/python3 - "$work/cmpgw.json" "$port" <<'PY'
import json, sys
path, port = sys.argv[1], int(sys.argv[2])
cfg = json.load(open(path))
cfg["listeners"][0]["port"] = port
# the demo's role with no bounds on the names it issues (tests/e2e/harness.py, widen_demo_role): the
# seeds ask for IP and URI SANs and names outside demo.example
cfg["roles"]["default"]["allowed_san_types"] = ["dns", "ip", "uri"]
cfg["roles"]["default"].pop("authorization", None)
cfg["upstreams"]["local"].pop("store", None)  # the seeds were captured without (the slow copy would share it)
cfg["upstreams"]["slow"] = dict(cfg["upstreams"]["local"], delay="2500ms")
cfg["roles"]["slow"] = dict(cfg["roles"]["default"], upstream="slow", poll_after="200ms")
json.dump(cfg, open(path, "w"), indent=2)
PY

cd "$work"
date +%s >capture_time
"$build/cmpgw" -c cmpgw.json >gateway.log 2>&1 &
gw=$!
for _ in $(seq 100); do
    curl -s -o /dev/null --cacert ca.pem "https://127.0.0.1:$port/pki/cmp" && break
    sleep 0.1
done

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# cmp PATH ARGS...: openssl cmp over TLS with the demo client certificate; refusals are fine here.
cmp() {
    local path=$1
    shift
    openssl cmp -server "127.0.0.1:$port" -path "$path" -trusted ca.pem -tls_used -tls_trusted ca.pem \
        -tls_cert client.pem -tls_key client.key "$@" >>client.log 2>&1 || true
}
sig=(-cert client.pem -key client.key)
pbm=(-ref demo-device -secret file:pbm.secret)
for k in dev1 dev2 dev3 dev4 dev5 dev6 dev7 dev8 dev9; do key $k.key; done
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null
openssl req -new -key dev4.key -subj "$subject" -out dev4.csr 2>/dev/null

cmp pki/cmp -cmd ir "${sig[@]}" -newkey dev1.key -subject "$subject" -sans fuzz.example -implicit_confirm \
    -certout dev1.pem -reqout ir-sig.der
cmp pki/cmp -cmd ir "${sig[@]}" -newkey dev9.key -subject "/O=cmpgw demo/CN=dev-9" -days 10 -implicit_confirm \
    -sans "dev-9.example.com 10.1.2.3 2001:db8::9 urn:example:dev-9" -certout dev9.pem -reqout ir-sans.der
cmp pki/cmp -cmd ir "${sig[@]}" -newkey rsa.key -subject "$subject" -implicit_confirm -certout rsa.pem \
    -reqout ir-rsa.der
cmp pki/cmp -cmd ir "${pbm[@]}" -newkey dev2.key -subject "$subject" -implicit_confirm -certout dev2.pem \
    -reqout ir-pbm.der
cmp pki/cmp -cmd cr "${sig[@]}" -newkey dev3.key -subject "$subject" -implicit_confirm -certout dev3.pem \
    -reqout cr.der
cmp pki/cmp -cmd p10cr "${sig[@]}" -csr dev4.csr -implicit_confirm -certout dev4.pem -reqout p10cr.der
cmp pki/cmp -cmd kur -cert dev1.pem -key dev1.key -newkey dev5.key -implicit_confirm -certout dev5.pem \
    -reqout kur.der
cmp pki/cmp -cmd rr -cert dev1.pem -key dev1.key -oldcert dev1.pem -revreason 1 -reqout rr.der
cmp pki/cmp -cmd genm "${sig[@]}" -reqout genm-empty.der
cmp pki/cmp -cmd ir -unprotected_requests -newkey dev6.key -subject "$subject" -certout dev6.pem \
    -reqout ir-unprotected.der
# certConf: an ir without implicitConfirm; pollReq: an ir to the slow role
cmp pki/cmp -cmd ir "${sig[@]}" -newkey dev7.key -subject "$subject" -certout dev7.pem \
    -reqout ir-confirm.der,certconf.der
cmp pki/roles/slow/cmp -cmd ir "${sig[@]}" -newkey dev8.key -subject "$subject" -certout dev8.pem \
    -reqout ir-poll.der,pollreq.der,poll2.der,poll3.der,poll4.der,poll5.der,poll6.der
for oid in caCerts:1.3.6.1.5.5.7.4.17 rootCaKeyUpdate:1.3.6.1.5.5.7.4.18 certReqTemplate:1.3.6.1.5.5.7.4.19 \
    crlStatusList:1.3.6.1.5.5.7.4.22; do
    "$build/tests/cmpclient" --url "https://127.0.0.1:$port/pki/cmp" --cafile ca.pem --tls-cert client.pem \
        --tls-key client.key --cert client.pem --key client.key --reqout "genm-${oid%%:*}.der" genm "${oid#*:}" \
        >>client.log 2>&1 || true
done
/usr/bin/python3 "$repo/tests/fuzz/craft_error.py" ir-confirm.der client.key error.der
# extraCerts no client sends, which the engine decodes last (craft_extra_certs.py): no certificate, one cut
# short, 16 (GW_MAX_EXTRA_CERTS) and 17; in an ir, in a certConf, pollReq and error of no transaction, and
# in the sequence seeds below in those of the transaction their ir opened
extras=()
for s in ir-sig certconf pollreq error; do
    /usr/bin/python3 -B "$repo/tests/fuzz/craft_extra_certs.py" $s.der $s-extra
    extras+=($s-extra-junk $s-extra-cut $s-extra-many $s-extra-over)
done
# the signed ir with a certProfile, and nothing else changed: the one fuzz_engine.h serves (FUZZ_PROFILE),
# which a mutated name is not (openssl cmp of OpenSSL 3.0 has no -profile)
/usr/bin/python3 -B "$repo/tests/fuzz/craft_profile.py" ir-sig.der client.key ir-profile.der fuzz
# crlStatusList values (no client sends one): the issuing CA's CRL held since before the capture; one
# held from the capture itself, as new as the CRL the local issuer makes then (the engine's clock); a
# list naming a distribution point, the root CA without thisUpdate, and the issuing CA's CRL as current
craft_crl() { /usr/bin/python3 -B "$repo/tests/fuzz/craft_crl_status.py" genm-crlStatusList.der client.key "$@"; }
craft_crl genm-crlStatusList-issuer.der "issuer:issuing.pem:$(date -u -d @$(($(cat capture_time) - 86400)) +%Y%m%d%H%M%SZ)"
craft_crl genm-crlStatusList-current.der "issuer:issuing.pem:$(date -u -d @"$(cat capture_time)" +%Y%m%d%H%M%SZ)"
craft_crl genm-crlStatusList-sources.der dp:https://127.0.0.1/crl/issuing.crl issuer:ca.pem \
    "issuer:issuing.pem:$(date -u -d @$(($(cat capture_time) + 86400)) +%Y%m%d%H%M%SZ)"

singles=(ir-sig ir-sans ir-rsa ir-pbm ir-profile cr p10cr kur rr genm-empty genm-caCerts genm-rootCaKeyUpdate
    genm-certReqTemplate genm-crlStatusList genm-crlStatusList-issuer genm-crlStatusList-current
    genm-crlStatusList-sources ir-unprotected
    ir-confirm certconf ir-poll pollreq error "${extras[@]}")
for s in "${singles[@]}"; do
    if [[ ! -s $s.der ]]; then
        echo "make_seeds: no $s request was captured; the clients said:" >&2
        cat client.log >&2
        exit 1
    fi
done
rm -rf "$seeds" "$signed_seeds"
mkdir -p "$seeds" "$signed_seeds" "$shim_seeds"
rm -f "$shim_seeds"/seed-*
for s in "${singles[@]}"; do
    cp "$s.der" "$seeds/seed-$s.der"
    cp "$s.der" "$shim_seeds/seed-$s.der"
done
join() { # join NAME REQUEST...: the requests of one sequence seed
    local name=$1 first=1
    shift
    for r in "$@"; do
        [[ $first == 1 ]] || printf '%s' "$sep"
        cat "$r.der"
        first=0
    done >"$seeds/seed-$name.seq"
}
join ir-certconf ir-confirm certconf
join ir-error ir-confirm error
join ir-pollreq ir-poll pollreq
join ir-certconf-extra-junk ir-confirm certconf-extra-junk
join ir-error-extra-junk ir-confirm error-extra-junk
join ir-pollreq-extra-junk ir-poll pollreq-extra-junk
cp "$seeds"/seed-* "$signed_seeds/"
cp capture_time "$pki/capture_time"
# fuzz_profile: the CertReqMsg of each CRMF seed and the CSR of the p10cr seed, as the callback gets them
profile_seeds=$repo/tests/fuzz/corpus/fuzz_profile
rm -f "$profile_seeds"/seed-*
mkdir -p "$profile_seeds"
for s in ir-sig ir-sans ir-rsa ir-pbm cr kur p10cr; do
    /usr/bin/python3 - "$s.der" "$profile_seeds/seed-$s.der" <<'PY'
import sys
def tlv(b, o):
    n, p = b[o + 1], o + 2
    if n & 0x80:
        k = n & 0x7F
        n, p = int.from_bytes(b[p:p + k], "big"), p + k
    return b[o], p, p + n
der = open(sys.argv[1], "rb").read()
_, p, _ = tlv(der, 0)                # PKIMessage
_, _, p = tlv(der, p)                # past the header
tag, p, _ = tlv(der, p)              # body [type]: its content
if tag != 0xA4:                      # CertReqMessages: the first CertReqMsg; p10cr: the CSR itself
    _, p, _ = tlv(der, p)
_, _, e = tlv(der, p)
open(sys.argv[2], "wb").write(der[p:e])
PY
done
# and CSRs naming every type the "strict" role of fuzz_profile has a rule for (emailAddress, DNS,
# IP, URI and email SANs): each name within its rule, and each just outside it (the emailAddress
# without an email SAN, which the roles without email refuse), so that the name checks of the
# request policy run on every kind of name, to a refusal and past it; and a host name in the CN
# with a wildcard DNS SAN, which its "hosts" role issues; and IPv4-mapped IPv6 addresses, one within the
# "strict" role's IPv4 range and one outside it
openssl req -new -key dev1.key -subj "/O=cmpgw demo/CN=fuzz-names/emailAddress=dev@example.com" -outform DER \
    -addext "subjectAltName=DNS:dev.example.com,IP:10.9.8.7,IP:2001:db8::7,URI:urn:example:names,email:dev@example.com" \
    -out "$profile_seeds/seed-p10-names.der"
openssl req -new -key dev1.key -subj "/O=cmpgw demo/CN=dev-names/emailAddress=dev@example.org" -outform DER \
    -addext "subjectAltName=DNS:*.example.org,IP:192.0.2.7,IP:2001:db9::7,URI:urn:other:names" \
    -out "$profile_seeds/seed-p10-outside.der"
openssl req -new -key dev1.key -subj "/O=cmpgw demo/CN=www.example.com" -outform DER \
    -addext "subjectAltName=DNS:*.example.com,IP:10.9.8.7" -out "$profile_seeds/seed-p10-host.der"
openssl req -new -key dev1.key -subj "/O=cmpgw demo/CN=fuzz-mapped" -outform DER \
    -addext "subjectAltName=IP:::ffff:10.9.8.7,IP:::ffff:192.0.2.7" -out "$profile_seeds/seed-p10-mapped.der"
# and certificates of the issuing CA, as an RA's rr targets whose names fuzz_profile holds to each
# role (gw_policy_check_names): the names of seed-p10-names with an IPv4-mapped address of them too; an
# IPv4-mapped address outside its IPv4 range; an IP address of 5 bytes and one of none, which no
# request gets past the profile with; a subjectAltName cut short and one given twice (a name outside
# every role in the second), which an upstream's certificate may hold; a host within the "hosts" role's
# allowed_subjects and one outside them; and the issuing CA itself
rr_cert() {
    local name=$1 subj=$2
    shift 2
    openssl req -new -key dev1.key -subj "$subj" "$@" -out "rr-$name.csr"
    openssl x509 -req -in "rr-$name.csr" -CA issuing.pem -CAkey issuing.key -copy_extensions copyall \
        -days 30 -outform DER -out "$profile_seeds/seed-rr-$name.der" 2>/dev/null
}
rr_cert names "/O=cmpgw demo/CN=fuzz-names/emailAddress=dev@example.com" -addext \
    "subjectAltName=DNS:dev.example.com,IP:10.9.8.7,IP:::ffff:10.9.8.7,IP:2001:db8::7,URI:urn:example:names,email:dev@example.com"
rr_cert mapped "/O=cmpgw demo/CN=dev-mapped" -addext "subjectAltName=IP:::ffff:192.0.2.7"
rr_cert bad-ip "/O=cmpgw demo/CN=dev-bad-ip" -addext "2.5.29.17=DER:300987050a090807078700"
rr_cert bad-san "/O=cmpgw demo/CN=dev-bad-san" -addext "2.5.29.17=DER:30038201"
# OpenSSL's tools write an extension once: the second is written as 2.5.29.99 and renamed
rr_cert san-twice "/O=cmpgw demo/CN=dev-san-twice" -addext "subjectAltName=DNS:dev.example.com" \
    -addext "2.5.29.99=DER:3011820f7777772e6578616d706c652e6f7267"
/usr/bin/python3 -B "$repo/tests/fuzz/craft_san_twice.py" "$profile_seeds/seed-rr-san-twice.der" issuing.key \
    "$profile_seeds/seed-rr-san-twice.der"
rr_cert host "/O=cmpgw demo/CN=www.example.com" -addext "subjectAltName=DNS:www.example.com,IP:10.9.8.7"
rr_cert other-host "/O=other/CN=www.example.com" -addext "subjectAltName=DNS:www.example.com"
openssl x509 -in issuing.pem -outform DER -out "$profile_seeds/seed-rr-ca.der"
# fuzz_issued: what the local issuer issued for the requests above, as an upstream's certificate
issued_seeds=$repo/tests/fuzz/corpus/fuzz_issued
rm -f "$issued_seeds"/seed-*
mkdir -p "$issued_seeds"
for c in ir-sig:dev1 ir-sans:dev9 ir-rsa:rsa ir-pbm:dev2 cr:dev3 p10cr:dev4 kur:dev5; do
    openssl x509 -in "${c#*:}.pem" -outform DER -out "$issued_seeds/seed-${c%%:*}.der"
done
# the device the seeds enrolled, sender of the kur and rr seeds: fuzz_cmp_signed signs as it
cp dev1.pem "$pki/device.pem"
cp dev1.key "$pki/device.key"

# fuzz_config: the demo, the unit tests' upstream baseline, the examples of deploy/examples, one with
# every optional key; file names mapped onto the fuzzing PKI. Each must pass `cmpgw check`.
config_seeds=$repo/tests/fuzz/corpus/fuzz_config
rm -f "$config_seeds"/seed-*
mkdir -p "$config_seeds"
/usr/bin/python3 - "$pki/cmpgw.json" "$repo/deploy/examples" "$config_seeds" <<'PY'
import copy, json, os, sys
demo_path, examples, out = sys.argv[1:4]
demo = json.load(open(demo_path))
files = {"vendor-root.pem": "ca.pem", "cfssl-issuer.pem": "issuing.pem", "upstream-ca.pem": "ca.pem",
         "vault-issuers.pem": "ca.pem", "vault-delegate.pem": "delegate.pem",
         "vault-delegate.key": "delegate.key", "vault-delegate-chain.pem": "ca.pem", "delegate-store": "store",
         "cfssl.authkey": "hmac.key", "/var/lib/cmpgw/local": "store", "/var/lib/cmpgw/revoked": "revoked",
         "/var/log/cmpgw/audit.log": "audit.log", "/run/cmpgw/handover.sock": "handover.sock"}

def mapped(v):
    if isinstance(v, dict):
        return {k: mapped(x) for k, x in v.items()}
    if isinstance(v, list):
        return [mapped(x) for x in v]
    return files.get(v, v) if isinstance(v, str) else v

def write(name, cfg):
    with open(os.path.join(out, "seed-%s.json" % name), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")

write("demo", demo)
for ex in sorted(os.listdir(examples)):
    cfg = mapped(json.load(open(os.path.join(examples, ex))))
    cfg.setdefault("audit", {"file": "audit.log"})
    cfg.pop("user", None)  # a system user the seed check does not run as
    write("example-" + ex[:-5], cfg)
base = copy.deepcopy(demo)
base["upstreams"].update({
    "vault": {"type": "vault", "url": "https://127.0.0.1:8200", "tls_ca": "ca.pem", "issuer_ca": "ca.pem",
              "token_file": "vault.token"},
    "cfssl": {"type": "cfssl", "url": "http://127.0.0.1:8888", "issuer_ca": "issuing.pem",
              "auth_key_file": "hmac.key"},
    "deleg": {"type": "local", "cert": "delegate.pem", "key": "delegate.key", "chain": "ca.pem", "store": "store"}})
base["roles"].update({
    "rv": {"upstream": "vault", "trust": ["demo"], "crmf": "delegate", "delegate": "deleg",
           "allowed_san_types": ["dns", "ip"],
           "authorization": {"tls_client": "require", "allowed_dns_names": ["*.example.com"],
                             "allowed_ip_ranges": ["10.0.0.0/8"], "allowed_key_types": ["ec:P-256"]}},
    "rc": {"upstream": "cfssl", "pbm": ["demo-device"], "upstream_role": "client"}})
write("baseline", base)
full = copy.deepcopy(demo)
full.update({"loop_threads": 2, "workers": 4, "queue_depth": 64, "path_prefix": "/v1/pki", "log_level": "warn",
             "cmp": {"message_time_window": "300s", "require_message_time": True, "transaction_ttl": "600s",
                     "max_transactions": 100, "max_transactions_per_identity": 4, "pbm_max_iterations": 5000,
                     "revocation_grace": "1h"},
             "root_ca_update": {"new_with_new": "ca.pem"}})
full["audit"]["audit_fields"] = ["csr", "common_name", "alt_names", "key_type", "key_bits"]
full["trust"]["demo"]["crl_file"] = "ca.crl"
full["upstreams"]["local"].update({"store": "store", "crl_url": "https://127.0.0.1:8443/v1/pki/crl/local",
                                   "timeout": "5s", "max_inflight": 8, "check_revocation": True})
full["roles"]["default"].update({
    "allowed_san_types": ["dns", "ip", "uri", "email"], "require_subject": True, "min_hash": "sha256",
    "poll_after": "1s", "device_allowlist": "demo.allow",
    "ca_pubs": "ca.pem", "authorization": {
        "tls_client": "optional", "tls_trust": ["demo"], "tls_subjects": ["/O=cmpgw demo/CN=*"],
        "tls_sans": ["*.example.com"], "signer_subjects": ["/O=cmpgw demo/*"],
        "allowed_common_names": ["dev-*"], "allowed_dns_names": ["*.example.com"], "allowed_uris": ["urn:*"],
        "allowed_emails": ["*@example.com"], "allowed_ip_ranges": ["10.0.0.0/8", "::1/128"],
        "allowed_key_types": ["rsa:2048", "ec:P-256", "ed25519"], "ra_subjects": ["/O=cmpgw demo/CN=ra"]}})
full["label_to_path_policy"]["off"] = "forbid"
write("full", full)
PY
for f in "$config_seeds"/seed-*.json; do
    cp "$f" "$work/check.json"
    "$build/cmpgw" check -c "$work/check.json" >/dev/null 2>"$work/check.err" ||
        { echo "make_seeds: $f is not a valid configuration:" >&2; cat "$work/check.err" >&2; exit 1; }
done
echo "make_seeds: $(ls "$seeds" | wc -l) CMP and $(ls "$config_seeds" | wc -l) configuration seeds; PKI in $pki"
