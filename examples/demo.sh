#!/usr/bin/env bash
# examples/demo.sh BUILD_DIR - the examples tour: every seed example, in the
# seed's order, each under a heading taken from the first line of its source
# ("/* Example N: title"), with short delays.  Stops at the first failure.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
export MP_DEMO=1
bold='' plain=''
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; fi
status=0
shopt -s nullglob
for src in "$here"/[0-9]*.c; do
    name=$(basename "$src" .c)
    exe="$build/examples/ex_$name"
    title=$(head -n 1 "$src" | sed -e 's|^/\* *||' -e 's| *\*/$||')
    printf '\n%s==== %s%s\n' "$bold" "$title" "$plain"
    if [ ! -x "$exe" ]; then
        echo "demo: $exe was not built" >&2
        exit 1
    fi
    if ! "$exe"; then
        echo "demo: $name failed" >&2
        status=1
        break
    fi
done
exit $status
