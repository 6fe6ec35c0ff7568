/* Address rewriting with checksum fix-ups: DNAT towards the backend, reverse
 * NAT (source back to the VIP) towards the endpoint. Ports never change
 * (Docker's VIP mode). */
#ifndef WEFT_EBPF_NAT_H
#define WEFT_EBPF_NAT_H

#include <bpf/bpf_core_read.h>

#include "lb_consts.h"
#include "lb_csum.h"

static __always_inline int lb_l4_csum_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? LB_TCP_CSUM_OFF : LB_UDP_CSUM_OFF;
}

/* The kernel's view of the skb, for ip_summed (a kfunc, kernel 6.2+). */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

static __always_inline int lb_ip_summed(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);

	return BPF_CORE_READ_BITFIELD(kskb, ip_summed);
}

/* Rewrites the IPv4 source (reply) or destination (dnat) address from
 * old_addr to new_addr, fixes both checksums, and sets the MAC at mac_off
 * (0: destination, ETH_ALEN: source) to `mac`. Everything is written through
 * direct packet access with the checksum deltas computed here (lb_csum.h):
 * a bpf_l4_csum_replace call costs about as much as the rest of a conntrack
 * hit. Only a CHECKSUM_COMPLETE skb (whose skb->csum must follow the pseudo
 * header, which a program cannot write) goes through the helper. 0 or -1. */
static __always_inline int lb_rewrite_addr(struct __sk_buff *skb, __u8 proto, int reply,
					   __u32 old_addr, __u32 new_addr, const __u8 *mac)
{
	int summed = lb_ip_summed(skb);
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;

	if (summed == LB_CHECKSUM_COMPLETE) {
		__u64 l4_flags = BPF_F_PSEUDO_HDR | sizeof(new_addr);

		/* A UDP checksum of 0 means "none" and must stay 0. */
		if (proto == IPPROTO_UDP)
			l4_flags |= BPF_F_MARK_MANGLED_0;
		if (bpf_l4_csum_replace(skb, lb_l4_csum_off(proto), old_addr, new_addr, l4_flags))
			return -1;
	}

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	ip = data + ETH_HLEN;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = data + LB_L4_OFF;

		if ((void *)(tcp + 1) > data_end)
			return -1;
		if (summed != LB_CHECKSUM_COMPLETE)
			tcp->check = lb_l4_csum_replace_addr(tcp->check, summed == LB_CHECKSUM_PARTIAL,
							     0, old_addr, new_addr);
	} else {
		struct udphdr *udp = data + LB_L4_OFF;

		if ((void *)(udp + 1) > data_end)
			return -1;
		if (summed != LB_CHECKSUM_COMPLETE)
			udp->check = lb_l4_csum_replace_addr(udp->check, summed == LB_CHECKSUM_PARTIAL,
							     1, old_addr, new_addr);
	}
	ip->check = lb_csum_replace4(ip->check, old_addr, new_addr);
	if (reply) {
		ip->saddr = new_addr;
		__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	} else {
		ip->daddr = new_addr;
		__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	}
	return 0;
}

/* Hairpin: the source and the destination change (the backend's own flow,
 * balanced to itself, goes back in from the hairpin address; its replies
 * go back in from the VIP). Rare, so two helper calls are fine. 0 or -1. */
static __always_inline int lb_rewrite_both(struct __sk_buff *skb, __u8 proto, __u32 old_src,
					   __u32 new_src, __u32 old_dst, __u32 new_dst,
					   const __u8 *dst_mac, const __u8 *src_mac)
{
	__u64 l4_flags = BPF_F_PSEUDO_HDR | sizeof(new_src);
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;

	if (proto == IPPROTO_UDP)
		l4_flags |= BPF_F_MARK_MANGLED_0;
	if (bpf_l4_csum_replace(skb, lb_l4_csum_off(proto), old_src, new_src, l4_flags) ||
	    bpf_l4_csum_replace(skb, lb_l4_csum_off(proto), old_dst, new_dst, l4_flags))
		return -1;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return -1;
	ip->check = lb_csum_replace4(lb_csum_replace4(ip->check, old_src, new_src), old_dst, new_dst);
	ip->saddr = new_src;
	ip->daddr = new_dst;
	__builtin_memcpy(eth->h_dest, dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src_mac, ETH_ALEN);
	return 0;
}

/* Towards the backend: destination address and destination MAC. */
static __always_inline int lb_dnat(struct __sk_buff *skb, __u8 proto, __u32 vip,
				   const struct lb_backend *backend)
{
	return lb_rewrite_addr(skb, proto, 0, vip, backend->ip, backend->mac);
}

/* Towards the endpoint: the reply's source becomes the VIP again, with the
 * VIP's MAC as source so the endpoint's neighbour entry stays consistent. */
static __always_inline int lb_reverse_nat(struct __sk_buff *skb, __u8 proto, __u32 backend_ip,
					  __u32 vip)
{
	__u8 vip_mac[ETH_ALEN];

	lb_mac_from_ip(vip_mac, vip);
	return lb_rewrite_addr(skb, proto, 1, backend_ip, vip, vip_mac);
}

#endif
