# strata serve: the OpenAI-compatible server against the official `openai`
# client and raw HTTP on the bundled model (CPU): both endpoints streaming and
# not, 32 concurrent clients get the one-at-a-time greedy ids, disconnects
# free their slots, every bad-input class, 429, flat memory, SIGINT/SIGTERM.
st_add_py_test(serve_openai SCRIPT tests/serve/test_serve.py ARGS $<TARGET_FILE:strata>)
set_tests_properties(serve_openai PROPERTIES LABELS serve TIMEOUT 900)
st_add_cli_test(serve_cli_help RC 0 LABELS serve EXPECT "usage: strata serve|||--parallel N|||--api-key KEY" ARGS "serve --help")
st_add_cli_test(serve_cli_nomodel RC 2 LABELS serve EXPECT "model 'no/such/model' does not exist" ARGS "serve -m no/such/model")
st_add_cli_test(serve_cli_port RC 2 LABELS serve EXPECT "--port|||70000" ARGS "serve -m models/tiny-kjv --port 70000")
st_add_cli_test(serve_cli_preset RC 2 LABELS serve EXPECT "describes shapes only" ARGS "serve -c configs/what-if-cpu-qwen0.5b.yaml")
