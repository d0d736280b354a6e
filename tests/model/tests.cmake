# Model files: readers, dtype conversions, malformed inputs, `strata model`.
st_add_test(model_load SOURCES model/test_model_load.c LABELS model)
st_add_test(model_dtype SOURCES model/test_dtype.c LABELS model)
st_add_cli_test(model_cli_hf RC 0 LABELS model
  EXPECT "architecture: qwen3|||heads 4 (KV heads 1), head_dim 24|||vocab 509|||q/k norm yes|||parameters: 167120|||layers 0-2  132.69 KiB each|||tokenizer: none"
  ARGS "model tests/fixtures/models/qwen3-tiny/hf")
st_add_cli_test(model_cli_gguf RC 0 LABELS model
  EXPECT "format: GGUF|||architecture: llama|||layout norm (adjacent pairs), scaling llama3 (rope_freqs.weight)|||f16       279.75 KiB  16 tensors|||f32         1.28 KiB  6 tensors"
  ARGS "model tests/fixtures/models/llama-tiny/llama-tiny-f16.gguf")
st_add_cli_test(model_cli_json RC 0 LABELS model
  EXPECT "qwen2|||: 251,|||: 1e-6,|||: 90368,|||148480,|||tied_embeddings|||norm_bytes"
  ARGS "model tests/fixtures/models/qwen2-tiny/qwen2-tiny-f32.gguf --json")
st_add_cli_test(model_cli_help RC 0 LABELS model EXPECT "usage: strata model [-m] [FILE|DIR] [--json]" ARGS "model --help")
st_add_cli_test(model_cli_noarg RC 0 LABELS model EXPECT "models/tiny-kjv|||architecture: qwen3" ARGS "model")
st_add_cli_test(model_cli_badopt RC 2 LABELS model EXPECT "unknown option '--jsn'" ARGS "model x.gguf --jsn")
st_add_cli_test(model_cli_notmodel RC 1 LABELS model
  EXPECT "CMakeLists.txt: not a GGUF file (no 'GGUF' magic at byte 0) and not a directory|||hint: name a .gguf file"
  ARGS "model CMakeLists.txt")
st_add_cli_test(model_cli_safetensors_file RC 2 LABELS model
  EXPECT "a .safetensors file alone does not describe a model|||pass the directory"
  ARGS "model tests/fixtures/models/qwen2-tiny/hf/model.safetensors")
st_add_test(model_bad SOURCES model/test_model_bad.c LABELS model)
st_add_test(model_hparams SOURCES model/test_model_hparams.c LABELS model)
