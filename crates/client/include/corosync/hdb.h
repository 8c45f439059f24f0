/*
 * corosync-rs: the handle type of the EVS callbacks.
 *
 * Corosync's <corosync/hdb.h> is its internal handle database; client
 * programs only ever use its hdb_handle_t (in evs.h callbacks), which
 * is all this header provides.
 */
#ifndef COROSYNC_HDB_H_DEFINED
#define COROSYNC_HDB_H_DEFINED

#include <stdint.h>

typedef uint64_t hdb_handle_t;

#endif /* COROSYNC_HDB_H_DEFINED */
