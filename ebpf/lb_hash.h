/* The flow hash that picks a Maglev slot. Shared by the BPF program and the
 * C++ lookup (`weft lb lookup`), so both answer the same for the same flow.
 * Plain C, no helpers: Bob Jenkins' lookup3 final mix (the kernel's jhash). */
#ifndef WEFT_EBPF_LB_HASH_H
#define WEFT_EBPF_LB_HASH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define LB_HASH_SEED 0x77656674u /* "weft" */

static inline __u32 lb_rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

static inline __u32 lb_jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	a += 0xdeadbeefu + (3u << 2) + initval;
	b += 0xdeadbeefu + (3u << 2) + initval;
	c += 0xdeadbeefu + (3u << 2) + initval;
	c ^= b; c -= lb_rol32(b, 14);
	a ^= c; a -= lb_rol32(c, 11);
	b ^= a; b -= lb_rol32(a, 25);
	c ^= b; c -= lb_rol32(b, 16);
	a ^= c; a -= lb_rol32(c, 4);
	b ^= a; b -= lb_rol32(a, 14);
	c ^= b; c -= lb_rol32(b, 24);
	return c;
}

/* The destination address is left out on purpose: a service's table is
 * already chosen by its frontend, and leaving it out lets a lookup by
 * service (one table for all of its VIPs) answer without naming a VIP.
 * Arguments in network order, as on the wire. */
static inline __u32 lb_flow_hash(__u32 saddr, __u16 sport, __u16 dport, __u8 proto)
{
	return lb_jhash_3words(saddr, ((__u32)sport << 16) | dport, proto,
			       LB_HASH_SEED);
}

#endif
