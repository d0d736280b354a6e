# Run at every build (the strata_commit target): writes OUT, the source of
# st_build_commit(), with the commit the tree is at and "+dirty" when tracked
# files differ from it, so `strata --version` and every benchmark's JSON name
# the code that was built, not the commit of the last configure. The file is
# rewritten only when its text changes (no relink otherwise).
#   cmake -DSRC=<source dir> -DOUT=<file> -P cmake/commit.cmake
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${SRC}
  OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT commit)
  set(commit unknown)
else()
  execute_process(COMMAND git diff --quiet HEAD -- WORKING_DIRECTORY ${SRC} RESULT_VARIABLE dirty ERROR_QUIET)
  if(dirty EQUAL 1)
    string(APPEND commit "+dirty")
  endif()
endif()
set(text "#include \"base/base.h\"\nconst char *st_build_commit(void) { return \"${commit}\"; }\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
