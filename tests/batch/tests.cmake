# Many sequences per engine step (batched decode, micro-batches in flight), and
# non-finite logits reported where they first appear.
st_add_test(engine_batch SOURCES batch/test_batch.c LABELS engine)
