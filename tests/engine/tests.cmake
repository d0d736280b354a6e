# The engine: golden logits and greedy tokens against transformers for every
# fixture model and format; stage splits and chunking give identical bits.
st_add_test(engine_golden SOURCES engine/test_golden.c LABELS engine golden)
st_add_test(engine_stages SOURCES engine/test_stages.c LABELS engine)

# strata generate: greedy ids equal transformers' (reference.json greedy_tokens)
st_add_cli_test(generate_cli_qwen2_hf RC 0 LABELS engine golden
  EXPECT "232,232,232,232,232,134,134,134,134,134,134,179,179,179,179,179"
  ARGS "generate -m tests/fixtures/models/qwen2-tiny/hf --tokens 33,32,200,125,148,150,178,7,121,37,100,232 -n 16")
st_add_cli_test(generate_cli_qwen3_gguf RC 0 LABELS engine golden
  EXPECT "358,144,369,505,8,413,244,45,355,475,50,11,457,253,47,66"
  ARGS "generate -m tests/fixtures/models/qwen3-tiny/qwen3-tiny-f32.gguf --tokens 311,127,495,481,32,96,101,91,296,178,245,117 -n 16 --threads 1 --batch 5")
st_add_cli_test(generate_cli_llama_f16 RC 0 LABELS engine golden
  EXPECT "357,104,336,208,218,225,170,31,162,225,266,105,293,257,353,149"
  ARGS "generate -m tests/fixtures/models/llama-tiny/llama-tiny-f16.gguf --tokens 343,331,313,327,26,310,360,100,64,29,306,362 --kv-dtype f16")
st_add_cli_test(generate_cli_help RC 0 LABELS engine EXPECT "usage: strata generate [-m MODEL | -c deploy.yaml]|||--logits FILE|||--chat|||--raw " ARGS "generate --help")
st_add_cli_test(generate_cli_no_prompt RC 2 LABELS engine EXPECT "give a prompt: -p TEXT, --chat, or --tokens 1,2,3"
  ARGS "generate -m tests/fixtures/models/qwen2-tiny/hf")
st_add_cli_test(generate_cli_logits_text RC 2 LABELS engine EXPECT "--logits goes with --tokens"
  ARGS "generate -m models/tiny-kjv -p hello --logits x.npy")
st_add_cli_test(generate_cli_nomodel RC 2 LABELS engine EXPECT "model 'no/such/model' does not exist|||hint:" ARGS "generate -m no/such/model --tokens 1,2")
st_add_cli_test(generate_cli_badlist RC 2 LABELS engine
  EXPECT "--tokens: item 2 at character 2 is not a token id: 'x'|||hint: write the ids"
  ARGS "generate -m tests/fixtures/models/qwen2-tiny/hf --tokens 1,x,3")
st_add_cli_test(generate_cli_badid RC 2 LABELS engine
  EXPECT "token id 251 (input position 1) is outside the vocabulary"
  ARGS "generate -m tests/fixtures/models/qwen2-tiny/hf --tokens 1,251")
# past a fixed context: the output stops when it is full and says so (exit 0);
# 3 prompt tokens + 6 new ones = the 8-token cache and the one token it predicts
st_add_cli_test(generate_cli_ctx RC 0 LABELS engine
  EXPECT "139,139,139,139,139,139\n|||stopped: the context of 8 tokens is full|||hint: raise --ctx"
  ARGS "generate -m tests/fixtures/models/qwen2-tiny/hf --tokens 1,2,3 -n 16 --ctx 8")
# a context beyond the trained one (the bundled model: 1024) runs, with a warning naming the field
st_add_cli_test(generate_cli_ctx_trained RC 0 LABELS engine
  EXPECT "warning: a context of 4096 tokens is beyond the 1024 the model was trained for (config.json max_position_embeddings)"
  ARGS "generate -p Amen -n 2 --ctx 4096")
st_add_cli_test(generate_cli_ctx_prompt RC 2 LABELS engine
  EXPECT "the prompt (3 tokens) does not fit the context of 2 tokens|||hint: raise --ctx"
  ARGS "generate -m tests/fixtures/models/qwen2-tiny/hf --tokens 1,2,3 -n 16 --ctx 2")
st_add_cli_test(generate_cli_typo RC 2 LABELS engine EXPECT "unknown option '--thread' (did you mean '--threads'?)"
  ARGS "generate -m x --thread 2")
st_add_cli_test(generate_cli_logits_dir RC 1 LABELS engine EXPECT "cannot create the logits file"
  ARGS "generate -m tests/fixtures/models/qwen2-tiny/hf --tokens 1,2 --logits /nonexistent-dir/l.npy")
st_add_test(engine_generate_logits SOURCES engine/test_generate_logits.c LABELS engine golden)
st_add_test(engine_graph_errors SOURCES engine/test_graph_errors.c LABELS engine)
add_test(NAME engine_logits_same_ids COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/engine/logits_same_ids.sh $<TARGET_FILE:strata>
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(engine_logits_same_ids PROPERTIES LABELS engine)

# Quantized weights. The CUDA kernels' per-block math (kernels/cuda/quant.cuh)
# on the host: bit-identical dequantization and the dot-product bounds (built
# with the CUDA backend; nvcc compiles the helpers for the CPU, no GPU needed).
if(ST_HAVE_CUDA)
  st_add_test(engine_quant_math SOURCES engine/test_quant_math.cu LABELS engine quant)
endif()
# The CPU engine on GGUF files of every quantized type (and the Q4_K_M mix)
# against gguf-py's dequantization and a float64 forward pass: same greedy
# ids, logits within the 8-bit activation rounding of the CPU matmul (and to
# fp32 accuracy of a reference that rounds the same way); and
# tools/quantize.py's blocks read back exactly by gguf-py.
add_test(NAME engine_quant_fixtures
         COMMAND ${STRATA_PYTHON} tests/engine/quant_fixtures.py --strata $<TARGET_FILE:strata>
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
add_test(NAME tools_quantize_selftest COMMAND ${STRATA_PYTHON} tools/quantize.py --selftest
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(engine_quant_fixtures tools_quantize_selftest PROPERTIES LABELS "engine;quant")
# tests/gpu/quant_tolerances.json is what tests/gpu/quant_bound.py derives now
add_test(NAME engine_quant_tolerances
         COMMAND ${STRATA_PYTHON} tests/gpu/quant_bound.py --check tests/gpu/quant_tolerances.json
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
# tests/gpu/e2e_quant.sh without a GPU (every cuda:N on the CPU): its deployments,
# the CPU references and check_e2e.py's verdicts, on the q4_k_m fixture
add_test(NAME engine_quant_e2e_script
         COMMAND ${CMAKE_COMMAND} -E env E2E_FAKE_GPU=1 E2E_QTYPES=q4_k_m E2E_QPARTS=fixtures,whatif
                 E2E_STRATA=$<TARGET_FILE:strata> PYTHON=${STRATA_PYTHON}
                 STRATA_GPU_BUILD=${CMAKE_CURRENT_BINARY_DIR}/e2e_quant_fake OUT=${CMAKE_CURRENT_BINARY_DIR}/e2e_quant_fake
                 bash tests/gpu/e2e_quant.sh
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(engine_quant_tolerances engine_quant_e2e_script PROPERTIES LABELS "engine;quant")

# A q8_0 KV cache (issue 11 item 4): the same greedy ids as transformers' (the
# fixtures' reference ids, as above), planned with --kv-dtype q8_0 (its stage
# table says q8_0); head_dim 16 (two heads per Q8_0 block) in both models.
st_add_cli_test(generate_cli_kv_q8_qwen2 RC 0 LABELS engine golden
  EXPECT "232,232,232,232,232,134,134,134,134,134,134,179,179,179,179,179"
  ARGS "generate -m tests/fixtures/models/qwen2-tiny/hf --tokens 33,32,200,125,148,150,178,7,121,37,100,232 -n 16 --kv-dtype q8_0")
st_add_cli_test(generate_cli_kv_q8_llama RC 0 LABELS engine golden
  EXPECT "357,104,336,208,218,225,170,31,162,225,266,105,293,257,353,149|||0-1 E O      f32   eager  q8_0"
  ARGS "-v generate -m tests/fixtures/models/llama-tiny/llama-tiny-f16.gguf --tokens 343,331,313,327,26,310,360,100,64,29,306,362 --kv-dtype q8_0")
# rows of 24 values (1 kv head x 24) are not whole blocks: refused when planning
st_add_cli_test(generate_cli_kv_q8_rows RC 2 LABELS engine
  EXPECT "kv_dtype q8_0: qwen3-tiny-f32.gguf has KV rows of 24 values (1 kv heads x head_dim 24), not whole 32-value q8_0 blocks|||hint: use kv_dtype: f16 (or auto)"
  ARGS "generate -m tests/fixtures/models/qwen3-tiny/qwen3-tiny-f32.gguf --tokens 1,2,3 --kv-dtype q8_0")
st_add_cli_test(generate_cli_kv_bad RC 2 LABELS engine
  EXPECT "--kv-dtype wants auto, f32, f16, bf16 or q8_0, got 'q4_0'"
  ARGS "generate -m tests/fixtures/models/qwen2-tiny/hf --tokens 1,2 --kv-dtype q4_0")
