# bench_lock: pthread for the process-shared pthread_mutex_t peer.
find_package(Threads REQUIRED)
target_link_libraries(${name} PRIVATE Threads::Threads)
