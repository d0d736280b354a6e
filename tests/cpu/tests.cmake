# CPU kernels against double-precision references, and the CPU backend
# (thread pool, memory, links).
st_add_test(cpu_kernels SOURCES cpu/test_kernels.c LABELS cpu)
st_add_test(cpu_backend SOURCES cpu/test_backend.c LABELS cpu)
