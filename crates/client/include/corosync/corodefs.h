/*
 * corosync-rs: service ids and limits shared by the Corosync headers.
 *
 * Source-compatible with Corosync's <corosync/corodefs.h>: the same
 * names and values, written for corosync-rs (BSD-3-Clause).
 */
#ifndef CORODEFS_H_DEFINED
#define CORODEFS_H_DEFINED

#include <netinet/in.h>

/* The service ids of the IPC protocol. */
enum corosync_service_types {
	CMAP_SERVICE = 0,
	CFG_SERVICE = 1,
	CPG_SERVICE = 2,
	QUORUM_SERVICE = 3,
	PLOAD_SERVICE = 4,
	VOTEQUORUM_SERVICE = 5,
	MON_SERVICE = 6,
	WD_SERVICE = 7
};

/* Most processors (nodes) a ring may hold. */
#define PROCESSOR_COUNT_MAX 384

/* Bytes of a Totem address (room for IPv6). */
#define TOTEMIP_ADDRLEN (sizeof(struct in6_addr))

#endif /* CORODEFS_H_DEFINED */
