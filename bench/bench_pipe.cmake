# bench_pipe: librt for the POSIX message-queue peer (part of libc since glibc
# 2.34, a separate library before).
target_link_libraries(${name} PRIVATE rt)
