/* Address rewriting with checksum fix-ups: DNAT towards the backend, reverse
 * NAT (source back to the VIP) towards the endpoint. Ports never change
 * (Docker's VIP mode). */
#ifndef WEFT_EBPF_NAT_H
#define WEFT_EBPF_NAT_H

#include "lb_consts.h"

static __always_inline int lb_l4_csum_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? LB_TCP_CSUM_OFF : LB_UDP_CSUM_OFF;
}

/* RFC 1624 incremental update of a checksum for a changed 32-bit word. */
static __always_inline __u16 lb_csum_replace4(__u16 check, __u32 old_word, __u32 new_word)
{
	__u32 sum = (__u16)~check;

	sum += (__u16)~old_word + (__u16)~(old_word >> 16);
	sum += (__u16)new_word + (__u16)(new_word >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Rewrites the IPv4 source (reply) or destination (dnat) address from
 * old_addr to new_addr, fixes both checksums, and sets the MAC at mac_off
 * (0: destination, ETH_ALEN: source) to `mac`. The L4 checksum goes through
 * the kernel helper, which also keeps CHECKSUM_PARTIAL packets (the usual
 * case for TCP from a local socket over veth) right; the IP header's own
 * checksum is always complete, so it and the rest are written directly
 * (one helper call per packet, not four). 0 or -1. */
static __always_inline int lb_rewrite_addr(struct __sk_buff *skb, __u8 proto, int reply,
					   __u32 old_addr, __u32 new_addr, const __u8 *mac)
{
	__u64 l4_flags = BPF_F_PSEUDO_HDR | sizeof(new_addr);
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;

	/* A UDP checksum of 0 means "none" and must stay 0. */
	if (proto == IPPROTO_UDP)
		l4_flags |= BPF_F_MARK_MANGLED_0;
	if (bpf_l4_csum_replace(skb, lb_l4_csum_off(proto), old_addr, new_addr, l4_flags))
		return -1;

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return -1;
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
