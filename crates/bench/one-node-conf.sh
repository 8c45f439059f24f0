#!/bin/sh
# one-node-conf.sh CLUSTER_NAME STATE_DIR - prints the corosync.conf of the
# one-node measurements (callgrind-daemon.sh, scripts/libcpg-ab): udpu on
# 127.0.0.1 inside the caller's own network namespace, no crypto, no
# SCHED_RR, logging to stderr.
set -eu
cat <<CONF
totem {
    version: 2
    cluster_name: $1
    transport: udpu
    crypto_cipher: none
    crypto_hash: none
}
nodelist {
    node {
        ring0_addr: 127.0.0.1
        nodeid: 1
    }
}
system {
    state_dir: $2
    sched_rr: no
}
logging {
    to_stderr: yes
    to_syslog: no
}
CONF
