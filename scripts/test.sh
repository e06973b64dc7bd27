#!/bin/sh
# npm test, after pretest (scripts/test-deps.sh, the build): the unit project, then the integration project. Each
# runs whatever the other's outcome, so that one failure in CI hides nothing; arguments (a file filter, -t NAME)
# go to both.
unit=0
vitest run --project unit --passWithNoTests "$@" || unit=$?
integration=0
vitest run --project integration --passWithNoTests "$@" || integration=$?
if [ "$unit" -ne 0 ]; then echo "npm test: the unit tests failed (exit $unit); see above the integration run" >&2; fi
[ "$unit" -eq 0 ] && exit "$integration"
exit "$unit"
