# Planner tests: no GPU needed (catalog devices and presets only).
st_add_test(planner_partition_brute SOURCES planner/test_partition.c LABELS planner)
