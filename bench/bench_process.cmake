# bench_process: where bench/py/process.py lives when $MP_BENCH_PY_DIR is unset.
target_compile_definitions(${name} PRIVATE BENCH_PY_DIR_FALLBACK="${CMAKE_CURRENT_SOURCE_DIR}/py")
target_compile_definitions(${name} PRIVATE _GNU_SOURCE)
