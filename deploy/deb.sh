#!/usr/bin/env bash
# Builds the Debian package (make deb) into BUILD/deb/ and prints its path. deploy/debian is the
# packaging; dpkg-buildpackage runs in a copy of the source, BUILD/deb/src, with that directory as
# its debian/, so nothing is written into the source tree. The package is always the release build
# that debian/rules configures, whatever BUILD holds (the ASan build of make test, say). It is not
# built again while the source and the installed packages are those it was built from.
#
#   deploy/deb.sh [BUILD]     BUILD defaults to build
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
mkdir -p "$build/deb"
out=$(cd "$build/deb" && pwd)

for tool in dpkg-buildpackage dpkg-parsechangelog dpkg-architecture dh flock; do
    command -v "$tool" >/dev/null || { echo "deb: $tool not found: deploy/deps.sh installs it" >&2; exit 1; }
done

# What the package is built from: the sources and their build rules, the units, the packaging,
# the example configuration and the documentation (the tests are not built, nor copied).
inputs=(CMakeLists.txt README.md base gateway upstream mappings deploy docs)

version=$(dpkg-parsechangelog -l "$repo/deploy/debian/changelog" -S Version)
cmake_version=$(sed -n 's/^project(cmpgw VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
if [[ $version != "$cmake_version" ]]; then
    echo "deb: deploy/debian/changelog is at $version, CMakeLists.txt at $cmake_version: add a changelog entry" >&2
    exit 1
fi
deb="$out/cmpgw_${version}_$(dpkg-architecture -qDEB_HOST_ARCH).deb"

# One build at a time in BUILD/deb (make deb and the test of the package may meet there).
exec 9>"$out/.lock"
flock 9

# The source's contents, the installed packages (compiler, libraries, debhelper) and the build
# options but the number of jobs decide the package; a hash of them says whether the last one is
# still it.
source_hash() {
    local opts
    opts=$(tr ' ' '\n' <<<"${DEB_BUILD_OPTIONS:-}" | { grep -v -e '^parallel=' -e '^$' || true; } | LC_ALL=C sort)
    (cd "$1" && find "${inputs[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
     dpkg-query -W -f='${Package} ${Version}\n'
     echo "DEB_BUILD_OPTIONS: $opts") | sha256sum | cut -d' ' -f1
}
if [[ -f $deb && -f $out/source.sha256 && $(cat "$out/source.sha256") == "$(source_hash "$repo")" ]]; then
    echo "$deb"
    exit 0
fi

rm -rf "$out/src" "$out"/*.deb "$out"/*.ddeb "$out"/*.buildinfo "$out"/*.changes "$out/source.sha256"
mkdir "$out/src"
tar -C "$repo" -cf - "${inputs[@]}" | tar -C "$out/src" -xf -
cp -a "$out/src/deploy/debian" "$out/src/debian"
# the hash of what was copied, which a later run compares the source with
hash=$(source_hash "$out/src")

# A make that runs this passes its jobserver in MAKEFLAGS; the package build sets its own jobs:
# one per CPU unless DEB_BUILD_OPTIONS says how many.
unset MAKEFLAGS MFLAGS MAKELEVEL
if [[ " ${DEB_BUILD_OPTIONS:-} " != *" parallel="* ]]; then
    DEB_BUILD_OPTIONS="parallel=$(nproc)${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}"
    export DEB_BUILD_OPTIONS
fi
echo "deb: building cmpgw $version in $out/src (log: $out/build.log)" >&2
if ! (cd "$out/src" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1; then
    tail -n 40 "$out/build.log" >&2
    echo "deb: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
    exit 1
fi
[[ -f $deb ]] || { echo "deb: dpkg-buildpackage made no $deb" >&2; exit 1; }
echo "$hash" >"$out/source.sha256"
echo "$deb"
