#!/usr/bin/env bash
# Installs the Debian 12 packages cmpgw needs to build, test and run its demo, and only those that
# are missing or too old. Uses sudo when not root. Idempotent: prints nothing to do when all is there.
set -euo pipefail

# package[:minimum version]
wanted=(
    "libssl-dev:3.0.22" "libssl3:3.0.22" "openssl:3.0.22"   # 3.0.22 fixes a CMP server crash
    libh2o-evloop-dev libcurl4-openssl-dev libjson-c-dev libcmocka-dev
    cmake pkg-config gcc make clang-format                 # clang-format: make test checks the style
    strace curl                                             # e2e: audit fsync ordering; raw HTTP checks
    faketime                                                # e2e: the CRL number across a clock stepped back
    python3 python3-pyasn1-modules                          # e2e harness, independent decoding
    python3-cryptography                                    # Vault-API test server (tests/upstreams), fuzz seeds
    default-jdk-headless libbcpkix-java                     # BouncyCastle CMP client in e2e tests
    golang-cfssl                                            # `cfssl serve`: a real CA upstream in e2e tests
    clang libclang-rt-14-dev                                # make fuzz: libFuzzer, ASan and UBSan for tests/fuzz
    prometheus python3-prometheus-client                    # e2e: promtool checks /metrics, the client parses it
    libsystemd-dev                                          # sd_notify for Type=notify units (optional at build)
    systemd                                                 # e2e: systemd-analyze verifies deploy/systemd/cmpgw.service
    debhelper lintian dpkg-dev                              # make deb: dpkg-buildpackage, dh, lintian on the package
    softhsm2 libengine-pkcs11-openssl                       # e2e: keys in a PKCS#11 token (SoftHSM, libp11's engine)
    haproxy                                                 # e2e: the PROXY protocol through a real L4 balancer
    libhiredis-dev redis-server                             # "state": "redis" (optional at build), and its e2e tests
    valgrind                                                # make bench: instructions per enrolment (callgrind)
)

missing=()
for w in "${wanted[@]}"; do
    pkg=${w%%:*}
    min=""
    [[ $w == *:* ]] && min=${w#*:}
    have=$(dpkg-query -W -f='${Status} ${Version}' "$pkg" 2>/dev/null || true)
    if [[ $have != "install ok installed"* ]]; then
        missing+=("$pkg")
    elif [[ -n $min ]] && dpkg --compare-versions "${have##* }" lt "$min"; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# A libssl that is still too old (no security repository configured) is refused at startup anyway;
# say so now rather than after the build.
v=$(dpkg-query -W -f='${Version}' libssl3)
if dpkg --compare-versions "$v" lt 3.0.22; then
    echo "deps: libssl3 $v is older than 3.0.22; enable bookworm-security and run again" >&2
    exit 1
fi
