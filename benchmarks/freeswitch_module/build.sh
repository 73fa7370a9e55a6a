#!/bin/sh
# Build mod_rater_probe.so against an installed FreeSWITCH and put it into its mod dir.
#   FS_PREFIX=/work/fslab/freeswitch benchmarks/freeswitch_module/build.sh
# Then: fs_cli -x "load mod_rater_probe" (and "unload mod_rater_probe").
set -eu
FS_PREFIX=${FS_PREFIX:-/work/fslab/freeswitch}
HERE=$(cd "$(dirname "$0")" && pwd)
MOD_DIR=${FS_MOD_DIR:-$FS_PREFIX/lib/freeswitch/mod}
${CC:-cc} -std=gnu99 -O2 -g -fPIC -shared -Wall -Wextra -Wno-unused-parameter \
    -I"$FS_PREFIX/include/freeswitch" \
    -o "$MOD_DIR/mod_rater_probe.so" "$HERE/mod_rater_probe.c" \
    -L"$FS_PREFIX/lib" -lfreeswitch -Wl,-rpath,"$FS_PREFIX/lib"
echo "built $MOD_DIR/mod_rater_probe.so"
