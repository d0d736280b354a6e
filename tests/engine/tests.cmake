# The engine: golden logits and greedy tokens against transformers for every
# fixture model and format; stage splits and chunking give identical bits.
st_add_test(engine_golden SOURCES engine/test_golden.c LABELS engine golden)
st_add_test(engine_stages SOURCES engine/test_stages.c LABELS engine)
