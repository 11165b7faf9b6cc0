#!/usr/bin/env bash
# .ci/consumer.sh PREFIX WORKDIR - builds and runs a tiny program against an
# installed mproc, once through pkg-config (shared and static) and once
# through find_package(mproc), so a packaging break fails CI.
set -euo pipefail
prefix=$1
work=$2
mkdir -p "$work/consumer"
cat > "$work/consumer/main.c" <<'C'
#include <mproc.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    if (strcmp(mp_version(), "") == 0 || mp_version_hex() != MP_VERSION_HEX)
        return 1;
    printf("consumer: mproc %s, %s\n", mp_version(), mp_strerror(MP_EOF));
    return 0;
}
C
pcdir=$(dirname "$(find "$prefix" -name mproc.pc | head -n 1)")
export PKG_CONFIG_PATH="$pcdir"
libdir=$(pkg-config --variable=libdir mproc)
cc -Wall -Werror -o "$work/consumer/pc" "$work/consumer/main.c" $(pkg-config --cflags --libs mproc)
LD_LIBRARY_PATH="$libdir" "$work/consumer/pc"
cc -Wall -Werror -o "$work/consumer/pc_static" "$work/consumer/main.c" \
    $(pkg-config --cflags mproc) "$libdir/libmproc.a"
"$work/consumer/pc_static"
# The headers also compile as C++ (extern "C") and as strict C99.
if command -v c++ >/dev/null 2>&1; then
    cp "$work/consumer/main.c" "$work/consumer/main.cpp"
    c++ -Wall -Wextra -Werror -o "$work/consumer/cxx" "$work/consumer/main.cpp" \
        $(pkg-config --cflags mproc) "$libdir/libmproc.a"
    "$work/consumer/cxx"
fi
cc -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only $(pkg-config --cflags mproc) \
    "$work/consumer/main.c"
cat > "$work/consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(mproc 0 REQUIRED)
add_executable(consumer main.c)
target_link_libraries(consumer PRIVATE mproc::mproc)
add_executable(consumer_static main.c)
target_link_libraries(consumer_static PRIVATE mproc::mproc_static)
CM
cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/consumer/build" >/dev/null
"$work/consumer/build/consumer"
"$work/consumer/build/consumer_static"
echo "consumer: pkg-config and find_package both work"
