/* Address rewriting with checksum fix-ups: DNAT towards the backend, reverse
 * NAT (source back to the VIP) towards the endpoint. Ports never change
 * (Docker's VIP mode). Uses the kernel's incremental checksum helpers, which
 * also keep CHECKSUM_PARTIAL packets right. */
#ifndef WEFT_EBPF_NAT_H
#define WEFT_EBPF_NAT_H

#include "lb_consts.h"

static __always_inline int lb_l4_csum_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? LB_TCP_CSUM_OFF : LB_UDP_CSUM_OFF;
}

/* Rewrites the IPv4 address at addr_off (saddr or daddr) from old_addr to
 * new_addr and fixes the IP and L4 checksums. 0 or a negative errno. */
static __always_inline int lb_rewrite_addr(struct __sk_buff *skb, __u8 proto, int addr_off,
					   __u32 old_addr, __u32 new_addr)
{
	__u64 l4_flags = BPF_F_PSEUDO_HDR | sizeof(new_addr);
	int ret;

	/* A UDP checksum of 0 means "none" and must stay 0. */
	if (proto == IPPROTO_UDP)
		l4_flags |= BPF_F_MARK_MANGLED_0;
	ret = bpf_l4_csum_replace(skb, lb_l4_csum_off(proto), old_addr, new_addr, l4_flags);
	if (ret)
		return ret;
	ret = bpf_l3_csum_replace(skb, LB_IP_CSUM_OFF, old_addr, new_addr, sizeof(new_addr));
	if (ret)
		return ret;
	return bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0);
}

/* Towards the backend: destination address and destination MAC. */
static __always_inline int lb_dnat(struct __sk_buff *skb, __u8 proto, __u32 vip,
				   const struct lb_backend *backend)
{
	int ret = lb_rewrite_addr(skb, proto, LB_IP_DADDR_OFF, vip, backend->ip);

	if (ret)
		return ret;
	return bpf_skb_store_bytes(skb, 0, backend->mac, ETH_ALEN, 0);
}

/* Towards the endpoint: the reply's source becomes the VIP again, with the
 * VIP's MAC as source so the endpoint's neighbour entry stays consistent. */
static __always_inline int lb_reverse_nat(struct __sk_buff *skb, __u8 proto, __u32 backend_ip,
					  __u32 vip)
{
	__u8 vip_mac[ETH_ALEN];
	int ret = lb_rewrite_addr(skb, proto, LB_IP_SADDR_OFF, backend_ip, vip);

	if (ret)
		return ret;
	lb_mac_from_ip(vip_mac, vip);
	return bpf_skb_store_bytes(skb, ETH_ALEN, vip_mac, ETH_ALEN, 0);
}

#endif
