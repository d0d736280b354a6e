# The bundled model (models/tiny-kjv, issue "A small real model"): strata's
# numbers against transformers' (models/tiny-kjv/eval.json, computed in fp32 on
# the GPU machine when the model was trained).

# Held-out perplexity on the first 40 windows of 512 tokens of the test split
# (20,440 scored tokens): transformers gives 18.381833 (mean NLL 2.9113628,
# eval.json test.prefix); strata must print the same four decimals of the
# perplexity and five of the NLL, from the HF directory and the GGUF.
st_add_cli_test(bundled_ppl_hf RC 0 LABELS bundled
  EXPECT "perplexity 18.3818 (mean NLL 2.91136|||over 20440 tokens in 40 windows of 512"
  ARGS "perplexity -m models/tiny-kjv -f tests/fixtures/kjv/test.txt --max-windows 40 --cpu")
st_add_cli_test(bundled_ppl_gguf RC 0 LABELS bundled
  EXPECT "perplexity 18.3818 (mean NLL 2.91136|||over 20440 tokens in 40 windows of 512"
  ARGS "perplexity -m models/tiny-kjv.gguf -f tests/fixtures/kjv/test.txt --max-windows 40 --cpu")

# Greedy text equals transformers' greedy continuation (eval.json "generations"),
# from both files.
foreach(_src models/tiny-kjv models/tiny-kjv.gguf)
  string(MAKE_C_IDENTIFIER ${_src} _id)
  st_add_cli_test(bundled_greedy_beginning_${_id} RC 0 LABELS bundled
    EXPECT "In the beginning of the world, in the night when the light is in the light.\nFor the light is light, and the light is light, and the light is light."
    ARGS "generate -m ${_src} -p \"In the beginning\" --greedy -n 40 --cpu")
  st_add_cli_test(bundled_greedy_moses_${_id} RC 0 LABELS bundled
    EXPECT "saying, I will not go up into the tabernacle of the congregation, lest I bring forth my people Israel out of the land of Egypt."
    ARGS "generate -m ${_src} -p \"And the LORD spake unto Moses, saying,\" --greedy -n 40 --cpu")
endforeach()

# --chat keeps the KV cache across turns: turn 2 prefills only the new tokens
# (--stats counts) and its reply equals a one-shot run; the selftest plants a
# strata that reuses nothing and sees the check fail.
add_test(NAME bundled_chat_reuse COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bundled/chat_reuse.sh $<TARGET_FILE:strata>
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
add_test(NAME bundled_chat_reuse_selftest COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bundled/chat_reuse.sh --selftest
         $<TARGET_FILE:strata> WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(bundled_chat_reuse bundled_chat_reuse_selftest PROPERTIES LABELS bundled)

# generate --plan runs a saved plan that differs from what the planner would
# choose (stages, devices, context, chunk checked); plans for another model or
# other devices are refused. Selftest: a strata that ignores --plan fails it.
add_test(NAME bundled_plan_replay COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bundled/plan_replay.sh $<TARGET_FILE:strata>
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(bundled_plan_replay PROPERTIES LABELS bundled)
st_add_planted_test(bundled_plan_replay_planted DEFECT drop-plan LABELS bundled
  WANT "generate --plan ran the stages [first 0-3 f32 eager], the saved plan has"
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bundled/plan_replay.sh ${ST_PLANTED})

# --chat --raw continues one text: turn 2 sees turn 1's whole reply, the last
# (never fed back) token included.
add_test(NAME bundled_chat_raw COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bundled/chat_raw.sh $<TARGET_FILE:strata>
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(bundled_chat_raw PROPERTIES LABELS bundled)

# A preset describes shapes only: perplexity refuses it (it used to crash
# reaching for the tokenizer of a model that was never opened).
st_add_cli_test(perplexity_preset_refused RC 2 LABELS bundled
  EXPECT "model.preset 'qwen2.5-0.5b' describes shapes only|||hint: give 'model: {path: FILE}'"
  ARGS "perplexity -c configs/what-if-cpu-qwen0.5b.yaml -f tests/fixtures/kjv/test.txt")

# A probe profile named with --profile must load; it used to be skipped in silence.
st_add_cli_test(plan_profile_missing RC 1 LABELS bundled
  EXPECT "tests/bundled/no-such-profile.json: cannot open|||hint:"
  ARGS "plan -c configs/what-if-cpu-qwen0.5b.yaml --profile tests/bundled/no-such-profile.json")

# --chat takes its turns from stdin; "-p -" there is a usage error, not a turn named "-".
st_add_cli_test(bundled_chat_stdin_prompt RC 2 LABELS bundled
  EXPECT "--chat reads its turns from stdin already; give the first turn as -p TEXT"
  ARGS "generate -m models/tiny-kjv --chat -p -")

# The context grows to fit prompt + N when no --ctx is given; the deployment is
# planned once, after tokenizing (it used to be freed and re-opened, and then
# read after the free: ASan found it). Past the trained context and from stdin.
add_test(NAME bundled_long_context COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bundled/long_context.sh $<TARGET_FILE:strata>
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(bundled_long_context PROPERTIES LABELS bundled)

# Long chats keep going: 20 turns past the 1024-token context drop the oldest
# exchanges with a notice and keep the system prompt; the soak generates
# 20,000 tokens in turns with resident memory flat after warm-up and the same
# replies for the same seed on a second run.
st_add_py_test(bundled_chat_20_turns SCRIPT tests/bundled/chat_soak.py ARGS $<TARGET_FILE:strata> --tokens 0 --turns-min 20)
st_add_py_test(bundled_chat_soak SCRIPT tests/bundled/chat_soak.py ARGS $<TARGET_FILE:strata> --tokens 20000)
set_tests_properties(bundled_chat_20_turns bundled_chat_soak PROPERTIES LABELS bundled TIMEOUT 1800)

# --chat at a terminal (a pseudo-terminal): banner with the template, two
# turns, Ctrl-C stops a reply and the chat goes on, /help /save /reset /exit.
st_add_py_test(bundled_chat_tty SCRIPT tests/bundled/chat_tty.py ARGS $<TARGET_FILE:strata>)
set_tests_properties(bundled_chat_tty PROPERTIES LABELS bundled TIMEOUT 900)

# Stop strings: --stop (repeatable) and generation.stop end generation at the
# token that completes the first stop string, across token boundaries (2, 3 and
# 9 tokens), against HF tokenizers' decoding of the greedy ids. Selftests: a
# strata that ignores --stop, or stops at half of it, fails it.
st_add_py_test(bundled_stop SCRIPT tests/bundled/check_stop.py ARGS $<TARGET_FILE:strata> LABELS bundled)
st_add_planted_test(bundled_stop_planted_ignored DEFECT drop-stop LABELS bundled
  WANT "FAIL --stop over 2 tokens" COMMAND ${STRATA_PYTHON} tests/harness/py_run.py tests/bundled/check_stop.py ${ST_PLANTED})
st_add_planted_test(bundled_stop_planted_wrong DEFECT wrong-stop LABELS bundled
  WANT "FAIL --stop over 2 tokens" COMMAND ${STRATA_PYTHON} tests/harness/py_run.py tests/bundled/check_stop.py ${ST_PLANTED})

# --system on the command line replaces the config's system prompt in --chat
# (replies against one-shot runs on hand-rendered ChatML); ignored, it fails.
st_add_py_test(bundled_chat_system SCRIPT tests/bundled/check_system.py ARGS $<TARGET_FILE:strata> LABELS bundled)
st_add_planted_test(bundled_chat_system_planted DEFECT drop-system LABELS bundled
  WANT "FAIL --system TEXT replaces the config's system prompt"
  COMMAND ${STRATA_PYTHON} tests/harness/py_run.py tests/bundled/check_system.py ${ST_PLANTED})
st_add_cli_test(generate_system_without_chat RC 0 LABELS bundled
  EXPECT "warning: generate: --system, --raw and --no-think apply to --chat only; ignored"
  ARGS "generate -m models/tiny-kjv --cpu -p In -n 2 --system Moses")

# Colour only on a terminal (a pseudo-terminal here) and never with NO_COLOR=1.
st_add_py_test(cli_no_color SCRIPT tests/bundled/check_color.py ARGS $<TARGET_FILE:strata> LABELS bundled)

# plan --svg through the CLI: well-formed SVG showing the plan's stages, layers,
# links and memory bars (against plan --format json); write and usage errors.
st_add_py_test(plan_svg_cli SCRIPT tests/bundled/check_svg.py ARGS $<TARGET_FILE:strata> LABELS bundled)
