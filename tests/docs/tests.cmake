# Documentation that runs: every command of README.md and docs/*.md in a ```sh
# block runs as written from the repository root (in a scratch mirror of it),
# and an exit code the text does not announce ("# exits N") fails the test.
# Commands marked "needs a GPU" / "needs N GPUs" run where the machine has them;
# "needs MPI", "needs your model" and "skip: REASON" are skipped with the
# reason printed, their -c FILE checked with 'strata plan --check'.
# tests/docs/run_docs.py states the rules; --selftest shows it catching a
# planted defect of each kind.
add_test(NAME docs_commands
  COMMAND ${STRATA_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/docs/run_docs.py $<TARGET_FILE:strata> ${PROJECT_SOURCE_DIR}
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(docs_commands PROPERTIES LABELS docs TIMEOUT 3000)
add_test(NAME docs_selftest
  COMMAND ${STRATA_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/docs/run_docs.py --selftest $<TARGET_FILE:strata> ${PROJECT_SOURCE_DIR}
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(docs_selftest PROPERTIES LABELS docs)
