#!/usr/bin/env bash
# A stand-in for the strata binary with one planted defect, so that a selftest
# can show that a check fails when the behaviour it guards is broken:
#   PLANT=DEFECT PLANT_STRATA=build/strata [PLANT_PYTHON=python3] tests/harness/plant.sh ARGS...
# The defects are listed in plant.py.
exec "${PLANT_PYTHON:-python3}" "$(dirname "${BASH_SOURCE[0]}")/plant.py" "$@"
