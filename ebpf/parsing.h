/* Packet parsing for the LB programs. Only what the programs need: Ethernet,
 * ARP for IPv4 over Ethernet, IPv4 with a 20-byte header, TCP/UDP ports and
 * the TCP fields a RST needs. */
#ifndef WEFT_EBPF_PARSING_H
#define WEFT_EBPF_PARSING_H

#include "lb_consts.h"

/* ARP for IPv4 over Ethernet (RFC 826): fixed part plus addresses. Our own
 * struct: linux/if_arp.h does not build under clang -target bpf. */
struct lb_arp_ipv4 {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 sip[4];
	__u8 tha[ETH_ALEN];
	__u8 tip[4];
} __attribute__((packed));

/* What the balancer needs to know about one TCP/UDP packet. Addresses and
 * ports in network order. */
struct lb_flow {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u16 pad;
	__u32 tcp_seq;      /* network order */
	__u32 tcp_ack_seq;  /* network order */
	__u32 payload_len;  /* TCP payload bytes (for a RST's ack number) */
};

/* Fills `flow` from the packet at skb: IPv4 with ihl == 5 already checked by
 * the caller. Returns 0, or -1 when the L4 header is truncated. */
static __always_inline int lb_parse_l4(struct __sk_buff *skb, struct lb_flow *flow)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;

	if ((void *)(ip + 1) > data_end)
		return -1;
	flow->saddr = ip->saddr;
	flow->daddr = ip->daddr;
	flow->proto = ip->protocol;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = data + LB_L4_OFF;

		if ((void *)(tcp + 1) > data_end)
			return -1;
		flow->sport = tcp->source;
		flow->dport = tcp->dest;
		flow->tcp_flags = ((__u8 *)tcp)[13];
		flow->tcp_seq = tcp->seq;
		flow->tcp_ack_seq = tcp->ack_seq;
		__u32 ip_len = bpf_ntohs(ip->tot_len);
		__u32 hdr_len = 20 + (__u32)tcp->doff * 4;
		flow->payload_len = ip_len > hdr_len ? ip_len - hdr_len : 0;
		return 0;
	}
	struct udphdr *udp = data + LB_L4_OFF;

	if ((void *)(udp + 1) > data_end)
		return -1;
	flow->sport = udp->source;
	flow->dport = udp->dest;
	return 0;
}

/* 02:42:<address bytes>, weft's MAC for an IPv4 address. */
static __always_inline void lb_mac_from_ip(__u8 mac[ETH_ALEN], __u32 addr)
{
	mac[0] = LB_MAC_PREFIX0;
	mac[1] = LB_MAC_PREFIX1;
	__builtin_memcpy(&mac[2], &addr, 4);
}

#endif
