# CPU kernels against double-precision references (the matmul: every dtype and
# SIMD level against the portable path and the documented error bound), and the CPU backend
# (thread pool, memory, links).
st_add_test(cpu_kernels SOURCES cpu/test_kernels.c LABELS cpu)
st_add_test(cpu_backend SOURCES cpu/test_backend.c LABELS cpu)
st_add_test(cpu_matmul SOURCES cpu/test_matmul.c LABELS cpu)
