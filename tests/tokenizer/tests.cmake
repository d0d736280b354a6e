# Tokenizer, detokenizer, chat templates and the sampler.
st_add_test(tokenizer_parity SOURCES tokenizer/test_tokenizer_parity.c LABELS tokenizer)
# The committed expectations still equal what HF tokenizers computes today.
add_test(NAME tokenizer_hf_recheck COMMAND ${STRATA_PYTHON} tests/tokenizer/gen_corpus.py --check
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(tokenizer_hf_recheck PROPERTIES LABELS tokenizer)
