# Several processes (docs/multihost.md). The rank/network config and the
# planner's network hops need no MPI; the runs under Open MPI's mpirun
# (CPU stages on 2 and 3 ranks: the ids of one process, bench across ranks,
# a bad rank, a killed rank, serve) need a build with MPI and mpirun.
st_add_test(mpi_network_plan SOURCES mpi/test_network_plan.c LABELS mpi planner)
find_program(ST_MPIRUN mpirun)
if(ST_HAVE_MPI AND ST_MPIRUN)
  add_test(NAME mpi_ranks_ids COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi/ranks.sh $<TARGET_FILE:strata> ids
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  add_test(NAME mpi_ranks_more COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi/ranks.sh $<TARGET_FILE:strata> more
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  add_test(NAME mpi_faults COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/mpi/faults.sh $<TARGET_FILE:strata>
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(mpi_faults PROPERTIES ENVIRONMENT "STRATA_PYTHON=${STRATA_PYTHON}")
  add_test(NAME mpi_serve COMMAND ${STRATA_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/serve.py $<TARGET_FILE:strata>
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(mpi_ranks_ids mpi_ranks_more mpi_faults mpi_serve PROPERTIES LABELS mpi TIMEOUT 600 RUN_SERIAL TRUE)
endif()
