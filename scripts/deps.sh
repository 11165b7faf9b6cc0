#!/usr/bin/env bash
# scripts/deps.sh [test|bench|ci] - installs what the build needs on a
# Debian machine.  As root it runs apt-get; otherwise it prints the exact
# command to run and exits 1.  Prints nothing when everything is there.
set -euo pipefail
what=${1:-test}
need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

have_cmd cmake      || need+=(cmake)
have_cmd make       || need+=(make)
have_cmd cc         || need+=(gcc)
have_cmd pkg-config || need+=(pkg-config)
have_pkg libcmocka-dev || need+=(libcmocka-dev)
if [ "$what" = ci ]; then
    have_cmd clang || need+=(clang)
fi
if [ "$what" = bench ]; then
    have_cmd python3 || need+=(python3)
    # optional peers of the queue benchmark
    have_pkg libzmq3-dev || need+=(libzmq3-dev)
    have_pkg libboost-dev || need+=(libboost-dev)
    have_cmd g++ || need+=(g++)
fi

[ ${#need[@]} -eq 0 ] && exit 0
cmd="apt-get install -y --no-install-recommends ${need[*]}"
if [ "$(id -u)" = 0 ] && have_cmd apt-get; then
    echo "deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
else
    echo "deps: missing ${need[*]}. Run:" >&2
    echo "  sudo apt-get update && sudo $cmd" >&2
    exit 1
fi
