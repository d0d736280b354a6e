# One flag style across the commands (issue 15): global flags before or after
# the command, --json on every data command (parsed by Python), -m everywhere
# and the bundled model as the default, every numeric flag's edge values (and
# the same verdict as the config key), a missing model = exit 2 everywhere,
# "wrote FILE", the plan SVG's colour key and bar order.
add_test(NAME cli_flags COMMAND ${STRATA_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_cli.py $<TARGET_FILE:strata>
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(cli_flags PROPERTIES LABELS cli TIMEOUT 1200)

# cmake --install into a temporary prefix; the installed binary finds its
# bundled model and configs there, from any directory.
add_test(NAME cli_install COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/install.sh ${CMAKE_BINARY_DIR} ${STRATA_PYTHON}
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(cli_install PROPERTIES LABELS cli)
