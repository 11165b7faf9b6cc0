# bench_lock: pthread for the peer mutex, and where bench/py/lock.py lives
# when $MP_BENCH_PY_DIR is unset.
find_package(Threads REQUIRED)
target_link_libraries(${name} PRIVATE Threads::Threads)
target_compile_definitions(${name} PRIVATE BENCH_PY_DIR_FALLBACK="${CMAKE_CURRENT_SOURCE_DIR}/py"
  _GNU_SOURCE)
