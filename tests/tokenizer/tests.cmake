# Tokenizer, detokenizer, chat templates and the sampler.
st_add_test(tokenizer_parity SOURCES tokenizer/test_tokenizer_parity.c LABELS tokenizer)
st_add_test(tokenizer_unit SOURCES tokenizer/test_tokenizer_unit.c LABELS tokenizer)
# The committed expectations still equal what HF tokenizers computes today.
st_add_py_test(tokenizer_hf_recheck SCRIPT tests/tokenizer/gen_corpus.py ARGS --check LABELS tokenizer)
# GGUF vocabularies: written at test time from tokenizer.json with gguf-py.
st_add_py_test(tokenizer_gguf_fixtures SCRIPT tests/tokenizer/make_vocab_gguf.py ARGS ${CMAKE_BINARY_DIR}/tokenizer-fixtures
               LABELS tokenizer)
set_tests_properties(tokenizer_gguf_fixtures PROPERTIES FIXTURES_SETUP tok_gguf)
st_add_test(tokenizer_gguf SOURCES tokenizer/test_tokenizer_gguf.c LABELS tokenizer
            ARGS ${CMAKE_BINARY_DIR}/tokenizer-fixtures)
set_tests_properties(tokenizer_gguf PROPERTIES FIXTURES_REQUIRED tok_gguf)
# Chat templates against jinja2 renderings (committed; re-rendered by the recheck).
st_add_test(tokenizer_chat SOURCES tokenizer/test_chat.c LABELS tokenizer)
st_add_py_test(tokenizer_chat_recheck SCRIPT tests/tokenizer/gen_chat.py ARGS --check LABELS tokenizer)
# Sampler: filters vs hand-computed distributions, chain order, penalties, PRNG, fixed seeds.
st_add_test(sampler SOURCES tokenizer/test_sampler.c LABELS tokenizer)
# strata tokenize / detokenize (expected outputs from HF tokenizers, tests/tokenizer/cli/,
# written by tests/tokenizer/gen_cli.py; the recheck recomputes them with HF tokenizers)
st_add_py_test(tokenizer_cli_recheck SCRIPT tests/tokenizer/gen_cli.py ARGS --check LABELS tokenizer)
function(st_tok_pipe_test name rc input want args)
  add_test(NAME ${name}
    COMMAND ${CMAKE_COMMAND} -DSTRATA=$<TARGET_FILE:strata> -DRC=${rc} -DINPUT=${PROJECT_SOURCE_DIR}/${input}
            -DWANT=${PROJECT_SOURCE_DIR}/${want} -DOUT=${CMAKE_BINARY_DIR}/${name}.out "-DARGS=${args}"
            -P ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer/cli_pipe.cmake
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES LABELS tokenizer)
endfunction()
set(_q3 tests/fixtures/tokenizers/qwen3)
st_tok_pipe_test(tokenize_cli_stdin 0 tests/tokenizer/cli/input.txt tests/tokenizer/cli/ids.txt "tokenize -m ${_q3}")
st_tok_pipe_test(tokenize_cli_lines_json 0 tests/tokenizer/cli/input.txt tests/tokenizer/cli/lines.json
                 "tokenize -m ${_q3}/tokenizer.json --lines --json")
st_tok_pipe_test(tokenize_cli_no_special 0 tests/tokenizer/cli/special.txt tests/tokenizer/cli/nospecial.txt
                 "tokenize -m ${_q3} --no-special")
st_tok_pipe_test(detokenize_cli_stdin 0 tests/tokenizer/cli/ids.txt tests/tokenizer/cli/input_repaired.txt "detokenize -m ${_q3}")
st_tok_pipe_test(detokenize_cli_json_lines 0 tests/tokenizer/cli/lines.json tests/tokenizer/cli/lines_decoded.txt
                 "detokenize -m ${_q3}")
st_tok_pipe_test(tokenize_cli_gguf 0 tests/tokenizer/cli/input.txt tests/tokenizer/cli/ids.txt
                 "tokenize -m ${CMAKE_BINARY_DIR}/tokenizer-fixtures/qwen3-vocab.gguf")
set_tests_properties(tokenize_cli_gguf PROPERTIES FIXTURES_REQUIRED tok_gguf)
st_add_cli_test(tokenize_cli_help RC 0 LABELS tokenizer EXPECT "usage: strata tokenize [-m PATH]|||--no-special" ARGS "tokenize --help")
st_add_cli_test(detokenize_cli_help RC 0 LABELS tokenizer EXPECT "usage: strata detokenize [-m PATH]|||--skip-special" ARGS "detokenize --help")
st_add_cli_test(tokenize_cli_no_model RC 2 LABELS tokenizer
  EXPECT "error: tokenizer 'no/such/dir' does not exist|||hint: give a tokenizer.json" ARGS "tokenize -m no/such/dir")
st_add_cli_test(tokenize_cli_bad_option RC 2 LABELS tokenizer EXPECT "unknown option '--jsn'" ARGS "tokenize -m x --jsn")
st_add_cli_test(tokenize_cli_missing RC 2 LABELS tokenizer
  EXPECT "tokenizer 'no/such/tokenizer.json' does not exist|||hint: give a tokenizer.json" ARGS "tokenize -m no/such/tokenizer.json")
st_add_cli_test(tokenize_cli_not_json RC 1 LABELS tokenizer
  EXPECT "CMakeLists.txt:1:1: expected '{'|||hint: the file is not valid tokenizer.json" ARGS "tokenize -m CMakeLists.txt")
st_add_cli_test(detokenize_cli_range RC 2 LABELS tokenizer
  EXPECT "argument 2, byte 1: id 151669 is outside the vocabulary (0..151668)|||hint: is this the tokenizer" ARGS "detokenize -m ${_q3} 9707 151669")
st_add_cli_test(detokenize_cli_junk RC 2 LABELS tokenizer
  EXPECT "argument 1, byte 5: 'x' is not part of a token id" ARGS "detokenize -m ${_q3} 9707x")
st_add_cli_test(detokenize_cli_args RC 0 LABELS tokenizer EXPECT "Hello world!" ARGS "detokenize -m ${_q3} 9707,1879 [0]")
# Malformed and hostile tokenizer files: positions, limits, no leak (tests/fuzz keeps finding them)
st_add_test(tokenizer_bad SOURCES tokenizer/test_tokenizer_bad.c LABELS tokenizer)
