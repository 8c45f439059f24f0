#!/bin/bash
# prepare.sh - gets .devbundle/ ready for the many-node comparison on the
# lent 16-core device machine (issue 7, item 4). Run here, as root, from
# anywhere; then hand .devbundle to the device and run run.sh there (the
# repository README's Benchmarks section, "Many nodes", says how and what
# the last runs found).
#
# .devbundle/ (ignored by git; 25 MB) holds:
#   root/, devrun.sh, setup.sh, teardown.sh  Corosync 3.1.7 from Debian 12
#       packages, built by ../shared/anchors/corosync-16core/bundle's own
#       build-bundle.sh (needs apt access, patchelf, gcc, libcpg-dev); the two
#       scripts get two small additions, below
#   ours/  our corosync, corosync-cmapctl, corosync-keygen, libcorosync_rs.so
#       and cpgbench_own (the anchor's client source) built against our
#       libcpg with RUNPATH $ORIGIN, all stripped
#   ours-mcast/  the same, with a corosync that runs ours on multicast
#       (`transport: udp`) where the harness writes udpu
#   perf/, ours-prof/  only with PROFILE=1, for profile.sh: this machine's
#       perf with its libraries, and ours with symbols
#
# The additions, so that one harness drives both engines (and a third, below,
# that reads each node's stats.srp.* around every throughput point):
#   devrun.sh: ENGINE_DIR=DIR takes corosync, corosync-keygen,
#       corosync-cmapctl and cpgbench_own from DIR instead of the bundle
#   setup.sh: FO_EXTRA_TOTEM adds totem lines to a cluster started with
#       --token (the failover runs), for our low-latency profile;
#       EXTRA_TOTEM adds them to every cluster (run.sh's SWEEP)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
shared=${SHARED:-$repo/../shared}
src=$shared/anchors/corosync-16core/bundle
D=$repo/.devbundle

grep -qxF '/.devbundle/' "$repo/.git/info/exclude" 2>/dev/null ||
    { mkdir -p "$repo/.git/info"; echo '/.devbundle/' >> "$repo/.git/info/exclude"; }

# root/GLIBC_MIN is the last thing build-bundle.sh writes: a build that
# failed half-way (its corosync already copied) is built again.
if [ ! -s "$D/root/GLIBC_MIN" ]; then
    command -v patchelf >/dev/null || apt-get install -y patchelf
    dpkg -s libcpg-dev >/dev/null 2>&1 || apt-get install -y libcpg-dev
    # build-bundle.sh downloads the installed version of each package, else
    # the candidate; with package lists older than the mirror, neither may be
    # there any more (2026-11-28: libpcre2-8-0's deb12u1 after deb12u2 came
    # out), so the lists are refreshed first.
    apt-get update -q >/dev/null
    rm -rf "$D"
    cp -r "$src" "$D"
    chmod -R u+w "$D"
    cp "$shared/anchors/corosync/cpgbench_own.c" "$D/"
    (cd "$D" && bash build-bundle.sh)
fi

# --- the two additions (idempotent) --------------------------------------
if ! grep -q ENGINE_DIR "$D/devrun.sh"; then
    sed -i '/^CB=\$CPGBENCH$/a\
if [ -n "${ENGINE_DIR:-}" ]; then\
    COROSYNC_BIN=$ENGINE_DIR/corosync; KEYGEN=$ENGINE_DIR/corosync-keygen\
    CPGBENCH=$ENGINE_DIR/cpgbench_own; CMAPCTL=$ENGINE_DIR/corosync-cmapctl; CB=$CPGBENCH\
fi' "$D/devrun.sh"
    grep -q 'ENGINE_DIR/corosync;' "$D/devrun.sh" || { echo "prepare.sh: devrun.sh patch failed" >&2; exit 1; }
fi
if ! grep -q FO_EXTRA_TOTEM "$D/setup.sh"; then
    sed -i '/token_coefficient: \$TOKCOEF"$/a\
        [ -n "$TOKEN" ] \&\& [ -n "${FO_EXTRA_TOTEM:-}" ] \&\& printf "%b\\n" "$FO_EXTRA_TOTEM"\
        [ -n "${EXTRA_TOTEM:-}" ] \&\& printf "%b\\n" "$EXTRA_TOTEM"' "$D/setup.sh"
    grep -q 'FO_EXTRA_TOTEM:-}" ]' "$D/setup.sh" && grep -q 'EXTRA_TOTEM:-}" ] &&' "$D/setup.sh" ||
        { echo "prepare.sh: setup.sh patch failed" >&2; exit 1; }
fi

# The third: HOP lines (scripts/device-bench/hop-stats.sh) around every
# throughput point, for each node of either engine.
cp "$repo/scripts/device-bench/hop-stats.sh" "$D/"
if ! grep -q hop_read "$D/devrun.sh"; then
    sed -i '/^tput_run() {/,/^    wait "\${pids\[@\]}" 2>\/dev\/null$/{
s|^    rm -f "\$SCR"/tput\.\*$|&\n    hop_read "$n" "$SCR/hop.0"|
s|^    wait "\${pids\[@\]}" 2>/dev/null$|&\n    hop_read "$n" "$SCR/hop.1"; hop_lines "$t" "$n" "$s" "$SCR/hop.0" "$SCR/hop.1"|
}' "$D/devrun.sh"
    sed -i '/^cs_pids() {/i . "$B/hop-stats.sh"' "$D/devrun.sh"
    [ "$(grep -c -e '^    hop_read "\$n"' -e '^\. "\$B/hop-stats.sh"' "$D/devrun.sh")" = 3 ] ||
        { echo "prepare.sh: devrun.sh hop patch failed" >&2; exit 1; }
fi

# --- ours ----------------------------------------------------------------
(cd "$repo" && cargo build --release)
O=$D/ours
rm -rf "$O"; mkdir -p "$O"
for b in corosync corosync-cmapctl corosync-keygen; do
    install -m 0755 "$repo/target/release/$b" "$O/$b"
done
install -m 0755 "$repo/target/release/libcorosync_rs.so" "$O/"
gcc -O2 -Wall -o "$O/cpgbench_own" "$D/cpgbench_own.c" -I "$repo/crates/client/include" \
    -L "$O" -lcorosync_rs -Wl,-rpath,'$ORIGIN'
strip --strip-unneeded "$O"/*

# ours-mcast/: ours with `transport: udp` (multicast), for run.sh's MCAST.
# The harness writes udpu configs; this corosync rewrites its file into the
# multicast form and runs ours (the same binary, so the pid and the name
# teardown.sh checks stay those setup.sh recorded).
M=$D/ours-mcast
rm -rf "$M"; mkdir -p "$M"
cp "$O"/corosync-cmapctl "$O"/corosync-keygen "$O"/cpgbench_own "$O"/libcorosync_rs.so "$M/"
cat > "$M/corosync" <<'WRAP'
#!/bin/sh
prev=; cfg=
for a in "$@"; do [ "$prev" = -c ] && cfg=$a; prev=$a; done
[ -n "$cfg" ] && sed -i 's/^    transport: udpu$/    transport: udp\n    interface {\n        linknumber: 0\n        mcastaddr: 239.192.77.1\n        mcastport: 5405\n    }/' "$cfg"
exec "$(dirname "$0")/../ours/corosync" "$@"
WRAP
chmod 0755 "$M/corosync"

# --- PROFILE=1: what profile.sh needs (perf is not installed there) --------
rm -rf "$D/perf" "$D/ours-prof"
if [ "${PROFILE:-0}" = 1 ]; then
    # this machine's perf and the libraries it loads (glibc stays the
    # target's: perf needs GLIBC_2.34, the device has 2.39), ~30 MB
    mkdir -p "$D/perf/lib"
    cp "$(command -v perf)" "$D/perf/"
    ldd "$(command -v perf)" | awk '/=>/ {print $3}' | grep -v -e '/libc\.so' -e '/libm\.so' |
        xargs -I{} cp -L {} "$D/perf/lib/"
    # the same build with its symbols (no debug info), for perf report there
    cp -r "$O" "$D/ours-prof"
    objcopy --strip-debug "$repo/target/release/corosync" "$D/ours-prof/corosync"
    objcopy --strip-debug "$repo/target/release/libcorosync_rs.so" "$D/ours-prof/libcorosync_rs.so"
fi
echo "prepare.sh: $(du -sh "$D" | cut -f1) in $D"
