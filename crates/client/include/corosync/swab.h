/*
 * corosync-rs: byte swapping macros of Corosync 2's public <corosync/swab.h>
 * (internal in Corosync 3; kept for programs written for Corosync 2).
 * Written for corosync-rs (BSD-3-Clause).
 */
#ifndef SWAB_H_DEFINED
#define SWAB_H_DEFINED

#include <sys/types.h>
#include <stdint.h>

#define swab16(x) ((uint16_t)((((uint16_t)(x) & 0x00ffU) << 8) | \
	(((uint16_t)(x) & 0xff00U) >> 8)))

#define swab32(x) ((uint32_t)((((uint32_t)(x) & 0x000000ffUL) << 24) | \
	(((uint32_t)(x) & 0x0000ff00UL) << 8) | \
	(((uint32_t)(x) & 0x00ff0000UL) >> 8) | \
	(((uint32_t)(x) & 0xff000000UL) >> 24)))

#define swab64(x) ((uint64_t)((((uint64_t)(x) & 0x00000000000000ffULL) << 56) | \
	(((uint64_t)(x) & 0x000000000000ff00ULL) << 40) | \
	(((uint64_t)(x) & 0x0000000000ff0000ULL) << 24) | \
	(((uint64_t)(x) & 0x00000000ff000000ULL) << 8) | \
	(((uint64_t)(x) & 0x000000ff00000000ULL) >> 8) | \
	(((uint64_t)(x) & 0x0000ff0000000000ULL) >> 24) | \
	(((uint64_t)(x) & 0x00ff000000000000ULL) >> 40) | \
	(((uint64_t)(x) & 0xff00000000000000ULL) >> 56)))

#endif /* SWAB_H_DEFINED */
