#!/bin/bash
# agent/ has no module cycle (tests/tools/module-graph), and the tool does
# see one when there is: a two-module cycle made up in a temp directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tool="$here/module-graph"
agent_dir="${1:-$here/../../agent}"
command -v /usr/bin/python3 >/dev/null || { echo "SKIP: no /usr/bin/python3"; exit 77; }

fail=0
if /usr/bin/python3 "$tool" "$agent_dir"; then
    echo "ok: agent/ has no module cycle"
else
    echo "FAIL: agent/ has a module cycle (above)"; fail=1
fi

t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
printf '#pragma once\nvoid a_run(void);\n' > "$t/a.h"
printf '#include "a.h"\n#include "b.h"\nvoid a_run(void) {\n        b_run();\n}\n' > "$t/a.c"
printf '#pragma once\nvoid b_run(void);\n' > "$t/b.h"
printf '#include "b.h"\nvoid a_run(void);\nvoid b_run(void) {\n        a_run();\n}\n' > "$t/b.c"
set +e
out=$(/usr/bin/python3 "$tool" --quiet "$t" 2>&1)
st=$?
set -e
if [ "$st" -eq 1 ] && grep "CYCLE among a, b" <<<"$out" >/dev/null; then
    echo "ok: a made-up cycle a <-> b is found"
else
    echo "FAIL: a made-up cycle was not reported (exit $st): $out"; fail=1
fi

# A module split over files (x.c, x-part.c) may call itself both ways.
rm -f "$t"/*
printf '#pragma once\nvoid x_run(void);\nvoid x_part(void);\n' > "$t/x.h"
printf '#include "x.h"\nvoid x_run(void) {\n        x_part();\n}\n' > "$t/x.c"
printf '#include "x.h"\nvoid x_part(void) {\n        x_run();\n}\n' > "$t/x-part.c"
if /usr/bin/python3 "$tool" --quiet "$t"; then
    echo "ok: x.c and x-part.c are one module"
else
    echo "FAIL: a module's own files were taken for a cycle"; fail=1
fi
exit $fail
