# bench_pipe: librt for the POSIX message-queue peer (part of libc since glibc
# 2.34, a separate library before), and where bench/py/pipe.py lives when
# $MP_BENCH_PY_DIR is unset.
target_link_libraries(${name} PRIVATE rt)
target_compile_definitions(${name} PRIVATE BENCH_PY_DIR_FALLBACK="${CMAKE_CURRENT_SOURCE_DIR}/py"
  _GNU_SOURCE)
