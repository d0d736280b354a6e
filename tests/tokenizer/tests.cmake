# Tokenizer, detokenizer, chat templates and the sampler.
st_add_test(tokenizer_parity SOURCES tokenizer/test_tokenizer_parity.c LABELS tokenizer)
# The committed expectations still equal what HF tokenizers computes today.
add_test(NAME tokenizer_hf_recheck COMMAND ${STRATA_PYTHON} tests/tokenizer/gen_corpus.py --check
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(tokenizer_hf_recheck PROPERTIES LABELS tokenizer)
# GGUF vocabularies: written at test time from tokenizer.json with gguf-py.
add_test(NAME tokenizer_gguf_fixtures
         COMMAND ${STRATA_PYTHON} tests/tokenizer/make_vocab_gguf.py ${CMAKE_BINARY_DIR}/tokenizer-fixtures
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(tokenizer_gguf_fixtures PROPERTIES LABELS tokenizer FIXTURES_SETUP tok_gguf)
st_add_test(tokenizer_gguf SOURCES tokenizer/test_tokenizer_gguf.c LABELS tokenizer
            ARGS ${CMAKE_BINARY_DIR}/tokenizer-fixtures)
set_tests_properties(tokenizer_gguf PROPERTIES FIXTURES_REQUIRED tok_gguf)
# Chat templates against jinja2 renderings (committed; re-rendered by the recheck).
st_add_test(tokenizer_chat SOURCES tokenizer/test_chat.c LABELS tokenizer)
add_test(NAME tokenizer_chat_recheck COMMAND ${STRATA_PYTHON} tests/tokenizer/gen_chat.py --check
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(tokenizer_chat_recheck PROPERTIES LABELS tokenizer)
# Sampler: filters vs hand-computed distributions, chain order, penalties, PRNG, fixed seeds.
st_add_test(sampler SOURCES tokenizer/test_sampler.c LABELS tokenizer)
