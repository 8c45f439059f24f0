#!/bin/sh
# Installs corosync-rs under PREFIX:
#
#   PREFIX/sbin/                 corosync and corosync-* tools (those built)
#   PREFIX/include/corosync/     corotypes.h corodefs.h swab.h cpg.h evs.h hdb.h cmap.h cfg.h quorum.h votequorum.h
#   PREFIX/lib/                  libcorosync_rs.so (SONAME libcorosync_rs.so)
#                                libcorosync_rs.a
#                                libcpg.so libcpg.so.4 libevs.so libevs.so.4
#                                libcpg.a libevs.a  (symlinks to the above)
#                                libquorum.so{,.5,.a} libvotequorum.so{,.8,.a} (symlinks)
#   PREFIX/lib/pkgconfig/        libcpg.pc libevs.pc libcmap.pc libcfg.pc corosync-rs.pc
#
# Usage: scripts/install.sh PREFIX
#
# Environment:
#   CARGO                  cargo to run (default: cargo)
#   CARGO_TARGET_DIR       cargo's target dir (default: <repo>/target)
#   COROSYNC_RS_ARTIFACTS  directory holding the built artifacts
#                          (default: $CARGO_TARGET_DIR/release)
#   COROSYNC_RS_SKIP_BUILD=1   install what is already built, build nothing
#   COROSYNC_RS_SKIP_DAEMON=1  build the client libraries only
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 PREFIX" >&2
	exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
cargo=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-$root/target}
artifacts=${COROSYNC_RS_ARTIFACTS:-$target_dir/release}

if [ "${COROSYNC_RS_SKIP_BUILD:-0}" != 1 ]; then
	(cd "$root" && "$cargo" build --release -p client)
	if [ "${COROSYNC_RS_SKIP_DAEMON:-0}" != 1 ]; then
		# The daemon may not build yet: install the libraries regardless.
		(cd "$root" && "$cargo" build --release -p daemon) ||
			echo "install.sh: daemon did not build; installing the libraries only" >&2
	fi
fi

for f in libcorosync_rs.so libcorosync_rs.a; do
	if [ ! -f "$artifacts/$f" ]; then
		echo "install.sh: $artifacts/$f is missing (build with: cargo build --release -p client)" >&2
		exit 1
	fi
done

install -d "$prefix/sbin" "$prefix/include/corosync" "$prefix/lib/pkgconfig"

for bin in corosync corosync-keygen corosync-cfgtool corosync-cpgtool corosync-cmapctl corosync-quorumtool; do
	if [ -f "$artifacts/$bin" ]; then
		install -m 0755 "$artifacts/$bin" "$prefix/sbin/$bin"
	fi
done

install -m 0644 "$root"/crates/client/include/corosync/*.h "$prefix/include/corosync/"

install -m 0755 "$artifacts/libcorosync_rs.so" "$prefix/lib/libcorosync_rs.so"
install -m 0644 "$artifacts/libcorosync_rs.a" "$prefix/lib/libcorosync_rs.a"
# One library holds every API: the Corosync names point at it, so -lcpg,
# -levs or both link, and binaries built against Corosync's libcpg.so.4 /
# libevs.so.4 find a file of that name.
for lib in cpg evs; do
	ln -sf libcorosync_rs.so "$prefix/lib/lib$lib.so"
	ln -sf libcorosync_rs.so "$prefix/lib/lib$lib.so.4"
	ln -sf libcorosync_rs.a "$prefix/lib/lib$lib.a"
done
# libcmap.so.4 and libcfg.so.7 are Corosync 3's sonames.
for pair in cmap:4 cfg:7; do
	lib=${pair%%:*}
	ln -sf libcorosync_rs.so "$prefix/lib/lib$lib.so"
	ln -sf libcorosync_rs.so "$prefix/lib/lib$lib.so.${pair##*:}"
	ln -sf libcorosync_rs.a "$prefix/lib/lib$lib.a"
done
# libquorum.so.5 and libvotequorum.so.8 are Corosync 3's sonames.
for pair in quorum:5 votequorum:8; do
	lib=${pair%%:*}
	ln -sf libcorosync_rs.so "$prefix/lib/lib$lib.so"
	ln -sf libcorosync_rs.so "$prefix/lib/lib$lib.so.${pair##*:}"
	ln -sf libcorosync_rs.a "$prefix/lib/lib$lib.a"
done

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
# What a Rust static library needs from the system when linked statically.
private_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

write_pc() { # name description lib
	cat > "$prefix/lib/pkgconfig/$1.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: $1
Version: ${version:-0.0.0}
Description: $2
Requires:
Libs: -L\${libdir} -l$3
Libs.private: $private_libs
Cflags: -I\${includedir}
PC
}

write_pc libcpg "corosync-rs closed process group library (libcpg compatible)" cpg
write_pc libevs "corosync-rs extended virtual synchrony library (libevs compatible)" evs
write_pc libcmap "corosync-rs configuration map library (libcmap compatible)" cmap
write_pc libcfg "corosync-rs configuration library (libcfg compatible)" cfg
write_pc libquorum "corosync-rs quorum library (libquorum compatible)" quorum
write_pc libvotequorum "corosync-rs vote quorum library (libvotequorum compatible)" votequorum
write_pc corosync-rs "corosync-rs client libraries (CPG, EVS)" corosync_rs

echo "installed corosync-rs into $prefix"
