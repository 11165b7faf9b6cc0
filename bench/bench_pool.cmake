# bench_pool: bench.h needs _GNU_SOURCE (sched_setaffinity), which
# bench/CMakeLists.txt does not define; and the Python peer is found
# relative to the source when MP_BENCH_PY_DIR is unset.
target_compile_definitions(${name} PRIVATE _GNU_SOURCE
  MP_BENCH_SRC_DIR="${CMAKE_CURRENT_SOURCE_DIR}")
