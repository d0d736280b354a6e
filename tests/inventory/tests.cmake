# strata inventory: the topology API, the CLI's table / --json / --yaml (parsed
# back with jansson and libyaml), CUDA_VISIBLE_DEVICES="", a quick --probe, and
# the profile format (round trip, malformed files).
st_add_test(inventory_api SOURCES inventory/test_inventory.c LABELS inventory)
st_add_test(inventory_cli SOURCES inventory/test_inventory_cli.c LABELS inventory ARGS $<TARGET_FILE:strata>)
st_add_test(inventory_profile SOURCES inventory/test_profile.c LABELS inventory)
st_add_cli_test(inventory_help RC 0 EXPECT "usage: strata inventory|||--probe|||~/.cache/strata/profile.json"
  ARGS "inventory --help" LABELS inventory)
st_add_cli_test(inventory_bad_option RC 2 EXPECT "unknown option '--jsn'|||did you mean '--json'"
  ARGS "inventory --jsn" LABELS inventory)
st_add_cli_test(inventory_json_and_yaml RC 2 EXPECT "--json and --yaml exclude each other"
  ARGS "inventory --json --yaml" LABELS inventory)
st_add_cli_test(inventory_output_without_probe RC 2 EXPECT "go with --probe"
  ARGS "inventory -o x.json" LABELS inventory)
st_add_cli_test(inventory_bad_probe_bytes RC 2 EXPECT "size '12XB' has unknown unit"
  ARGS "inventory --probe --probe-bytes 12XB" LABELS inventory)
st_add_cli_test(inventory_missing_profile RC 1 EXPECT "tests/inventory/no-such-profile.json: cannot open"
  ARGS "inventory --profile tests/inventory/no-such-profile.json" LABELS inventory)
# the backend registry: declarations against the ops tables, capabilities per cc, and every weight
# dtype the CPU path declares run against gguf-py's blocks
st_add_test(inventory_registry SOURCES inventory/test_registry.c LABELS inventory)
