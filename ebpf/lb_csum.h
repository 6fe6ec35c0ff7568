/* Incremental checksum arithmetic (RFC 1624), plain C without helpers, so
 * the BPF programs rewrite an address with no helper call and the C++ tests
 * can check the very same code against a full recomputation. */
#ifndef WEFT_EBPF_LB_CSUM_H
#define WEFT_EBPF_LB_CSUM_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* skb->ip_summed values (include/linux/skbuff.h; #defines, so not in
 * vmlinux.h). */
#define LB_CHECKSUM_NONE 0
#define LB_CHECKSUM_UNNECESSARY 1
#define LB_CHECKSUM_COMPLETE 2
#define LB_CHECKSUM_PARTIAL 3

/* A complete checksum (one's complement of the sum) after a 32-bit word of
 * the covered data changed from old_word to new_word. */
static inline __u16 lb_csum_replace4(__u16 check, __u32 old_word, __u32 new_word)
{
	__u32 sum = (__u16)~check;

	sum += (__u16)~old_word + (__u16)~(old_word >> 16);
	sum += (__u16)new_word + (__u16)(new_word >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The TCP/UDP checksum field after an address of the pseudo header changed,
 * as the kernel's bpf_l4_csum_replace(BPF_F_PSEUDO_HDR [|
 * BPF_F_MARK_MANGLED_0 for UDP]) writes it for an skb that is not
 * CHECKSUM_COMPLETE:
 *  - CHECKSUM_PARTIAL (checksum offload, the usual case for TCP from a local
 *    socket): the field holds the folded pseudo-header sum itself, not its
 *    complement, and the device completes it;
 *  - otherwise it is a complete checksum;
 *  - UDP: 0 means "no checksum" and stays 0; a computed 0 is sent as 0xffff. */
static inline __u16 lb_l4_csum_replace_addr(__u16 check, int partial, int udp,
					    __u32 old_addr, __u32 new_addr)
{
	__u16 result;

	if (udp && check == 0)
		return 0;
	if (partial)
		result = (__u16)~lb_csum_replace4((__u16)~check, old_addr, new_addr);
	else
		result = lb_csum_replace4(check, old_addr, new_addr);
	if (udp && result == 0)
		result = 0xffff;
	return result;
}

#endif
