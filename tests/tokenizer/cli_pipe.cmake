# Runs ${STRATA} ${ARGS} with standard input from ${INPUT} and checks the exit
# code (RC) and that standard output equals the file ${WANT} byte for byte.
separate_arguments(_args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${STRATA} ${_args} INPUT_FILE ${INPUT} RESULT_VARIABLE _rc
                OUTPUT_FILE ${OUT} ERROR_VARIABLE _err)
if(NOT "${_rc}" STREQUAL "${RC}")
  message(FATAL_ERROR "exit code ${_rc}, want ${RC}\nstderr:\n${_err}")
endif()
file(SHA256 ${OUT} _got)
file(SHA256 ${WANT} _want)
if(NOT _got STREQUAL _want)
  file(READ ${OUT} _o)
  file(READ ${WANT} _w)
  message(FATAL_ERROR "output differs from ${WANT}\n--- got:\n${_o}\n--- want:\n${_w}")
endif()
message(STATUS "ok")
