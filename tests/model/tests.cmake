# Model files: readers, dtype conversions, malformed inputs, `strata model`.
st_add_test(model_load SOURCES model/test_model_load.c LABELS model)
