# strata bench: JSON fields, stage/link times adding up, weight bytes and tokens
# checked independently (tests/bench/test_bench.c); usage and config errors.
st_add_test(bench_cli SOURCES bench/test_bench.c LABELS bench)
st_add_cli_test(bench_cli_help RC 0 LABELS bench EXPECT "usage: strata bench [-m MODEL [--cpu] | -c deploy.yaml] [options]|||--prompt-tokens N|||--decode-tokens N"
  ARGS "bench --help")
st_add_cli_test(bench_cli_nomodel RC 2 LABELS bench EXPECT "model 'no/such/model' does not exist|||hint:" ARGS "bench -m no/such/model")
st_add_cli_test(bench_cli_badcount RC 2 LABELS bench EXPECT "--prompt-tokens wants a token count from 1 to 16777216, got '0'"
  ARGS "bench -m models/tiny-kjv --prompt-tokens 0")
st_add_cli_test(bench_cli_typo RC 2 LABELS bench EXPECT "unknown option '--prompt-token' (did you mean '--prompt-tokens'?)"
  ARGS "bench -m models/tiny-kjv --prompt-token 5")
st_add_cli_test(bench_cli_ctx RC 2 LABELS bench
  EXPECT "bench: 100 prompt + 50 decode tokens do not fit the context of 128|||hint: use --ctx 150"
  ARGS "bench -m tests/fixtures/models/qwen2-tiny/hf --cpu --prompt-tokens 100 --decode-tokens 50")
st_add_cli_test(bench_cli_catalog RC 2 LABELS bench EXPECT "catalog device|||dry runs"
  ARGS "bench -c tests/bench/catalog.yaml --prompt-tokens 8 --decode-tokens 2")
