#!/bin/sh
# Each plugin built with kanban_add_plugin exports exactly one symbol,
# kanban_plugin_v1, and no STB_GNU_UNIQUE symbol (which would pin the DSO).
set -eu
status=0
for so in "$@"; do
    exported=$(readelf -W --dyn-syms "$so" | awk '$5 == "GLOBAL" && $7 != "UND" { print $8 }' | sort)
    if [ "$exported" != "kanban_plugin_v1" ]; then
        echo "FAIL $so exports: $(echo $exported)"; status=1
    fi
    if readelf -W --dyn-syms "$so" | grep -q UNIQUE; then
        echo "FAIL $so has GNU unique symbols"; status=1
    fi
done
[ $status -eq 0 ] && echo "ok: $# plugins export only kanban_plugin_v1"
exit $status
