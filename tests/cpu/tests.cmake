# CPU kernels against double-precision references, and the CPU backend
# (thread pool, memory, links).
st_add_test(cpu_kernels SOURCES cpu/test_kernels.c LABELS cpu)
st_add_test(cpu_backend SOURCES cpu/test_backend.c LABELS cpu)
st_add_test(cpu_kv_q8 SOURCES cpu/test_kv_q8.c LABELS cpu)
