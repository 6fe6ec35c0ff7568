/* Answers the program gives itself, built in place and sent back out of the
 * interface the packet came in on: ARP replies and ICMP echo replies for
 * VIPs, and refusals (TCP RST, ICMP port unreachable) when a VIP has nothing
 * to balance to, so a client never waits on a black hole. */
#ifndef WEFT_EBPF_REPLIES_H
#define WEFT_EBPF_REPLIES_H

#include "lb_maps.h"
#include "parsing.h"

/* Headers as raw bytes for packets built on the stack (vmlinux.h's
 * iphdr/tcphdr use bitfields). */
struct lb_raw_iphdr {
	__u8 version_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct lb_raw_tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res;
	__u8 flags;
	__be16 window;
	__u16 check;
	__be16 urg_ptr;
};

struct lb_raw_icmphdr {
	__u8 type;
	__u8 code;
	__u16 check;
	__be32 unused;
};

struct lb_pseudo_hdr {
	__be32 saddr;
	__be32 daddr;
	__be16 proto;
	__be16 len;
};

static __always_inline __u16 lb_csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* RFC 1624 incremental update of a 16-bit word. */
static __always_inline __u16 lb_csum_replace16(__u16 check, __u16 old_word, __u16 new_word)
{
	__u32 sum = (__u16)~check + (__u16)~old_word + (__u32)new_word;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

static __always_inline void lb_fill_ip(struct lb_raw_iphdr *ip, __u8 proto, __u16 tot_len,
				       __u32 saddr, __u32 daddr)
{
	ip->version_ihl = 0x45;
	ip->tos = 0;
	ip->tot_len = bpf_htons(tot_len);
	ip->id = 0;
	ip->frag_off = bpf_htons(IP_DF);
	ip->ttl = LB_REPLY_TTL;
	ip->protocol = proto;
	ip->check = 0;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->check = lb_csum_fold(bpf_csum_diff(0, 0, (void *)ip, sizeof(*ip), 0));
}

/* ARP request for a VIP: answer with the VIP's derived MAC. */
static __always_inline int lb_arp_reply(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct lb_arp_ipv4 *arp = data + ETH_HLEN;
	struct lb_vip_value *vip;
	__u8 vip_mac[ETH_ALEN];
	__u32 tip;

	if ((void *)(arp + 1) > data_end)
		return TC_ACT_OK;
	if (arp->hrd != bpf_htons(ARPHRD_ETHER) || arp->pro != bpf_htons(ETH_P_IP) ||
	    arp->hln != ETH_ALEN || arp->pln != 4 || arp->op != bpf_htons(ARPOP_REQUEST))
		return TC_ACT_OK;
	__builtin_memcpy(&tip, arp->tip, 4);
	vip = bpf_map_lookup_elem(&lb_vips, &tip);
	if (!vip || (vip->flags & LB_VIP_F_HAIRPIN))
		return TC_ACT_OK;

	lb_mac_from_ip(vip_mac, tip);
	arp->op = bpf_htons(ARPOP_REPLY);
	__builtin_memcpy(arp->tha, arp->sha, ETH_ALEN);
	__builtin_memcpy(arp->tip, arp->sip, 4);
	__builtin_memcpy(arp->sha, vip_mac, ETH_ALEN);
	__builtin_memcpy(arp->sip, &tip, 4);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, vip_mac, ETH_ALEN);
	lb_stat_inc(LB_STAT_ARP_REPLY);
	return bpf_redirect(skb->ifindex, 0);
}

/* ICMP to a VIP (20-byte IP header checked by the caller): echo requests are
 * answered, anything else is dropped (there is no host behind a VIP). */
static __always_inline int lb_icmp_to_vip(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct lb_raw_icmphdr *icmp = data + LB_L4_OFF;
	__u8 vip_mac[ETH_ALEN];
	__u32 vip;

	if ((void *)(icmp + 1) > data_end || icmp->type != ICMP_ECHO || icmp->code != 0) {
		lb_stat_inc(LB_STAT_DROP_OTHER);
		return TC_ACT_SHOT;
	}
	icmp->type = ICMP_ECHOREPLY;
	icmp->check = lb_csum_replace16(icmp->check, bpf_htons(ICMP_ECHO << 8),
					bpf_htons(ICMP_ECHOREPLY << 8));
	/* Swapping the addresses leaves the IP checksum as it is. */
	vip = ip->daddr;
	ip->daddr = ip->saddr;
	ip->saddr = vip;
	lb_mac_from_ip(vip_mac, vip);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, vip_mac, ETH_ALEN);
	lb_stat_inc(LB_STAT_ECHO_REPLY);
	return bpf_redirect(skb->ifindex, 0);
}

/* Builds a RST answering `flow` (from the VIP side) in place of the packet and
 * sends it back to the client. RFC 793 reset generation: if the segment had
 * ACK, the RST takes its sequence number from it; otherwise it acknowledges
 * the segment. A RST is never answered. */
static __always_inline int lb_send_rst(struct __sk_buff *skb, const struct lb_flow *flow,
				       __u32 stat)
{
	struct {
		struct lb_raw_iphdr ip;
		struct lb_raw_tcphdr tcp;
	} l3 = {};
	struct lb_pseudo_hdr pseudo = {};
	struct ethhdr eth = {};
	__s64 sum;

	if (flow->tcp_flags & TCP_FLAG_RST)
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, ETH_ALEN, eth.h_dest, ETH_ALEN))
		return TC_ACT_SHOT;
	lb_mac_from_ip(eth.h_source, flow->daddr);
	eth.h_proto = bpf_htons(ETH_P_IP);

	l3.tcp.source = flow->dport;
	l3.tcp.dest = flow->sport;
	l3.tcp.doff_res = 5 << 4;
	if (flow->tcp_flags & TCP_FLAG_ACK) {
		l3.tcp.seq = flow->tcp_ack_seq;
		l3.tcp.flags = TCP_FLAG_RST;
	} else {
		__u32 ack = bpf_ntohl(flow->tcp_seq) + flow->payload_len;

		if (flow->tcp_flags & TCP_FLAG_SYN)
			ack += 1;
		if (flow->tcp_flags & TCP_FLAG_FIN)
			ack += 1;
		l3.tcp.ack_seq = bpf_htonl(ack);
		l3.tcp.flags = TCP_FLAG_RST | TCP_FLAG_ACK;
	}
	pseudo.saddr = flow->daddr;
	pseudo.daddr = flow->saddr;
	pseudo.proto = bpf_htons(IPPROTO_TCP);
	pseudo.len = bpf_htons(sizeof(l3.tcp));
	sum = bpf_csum_diff(0, 0, (void *)&pseudo, sizeof(pseudo), 0);
	sum = bpf_csum_diff(0, 0, (void *)&l3.tcp, sizeof(l3.tcp), (__u32)sum);
	l3.tcp.check = lb_csum_fold((__u32)sum);
	lb_fill_ip(&l3.ip, IPPROTO_TCP, sizeof(l3), flow->daddr, flow->saddr);

	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(l3), 0))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, &eth, ETH_HLEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, &l3, sizeof(l3), 0))
		return TC_ACT_SHOT;
	lb_stat_inc(stat);
	return bpf_redirect(skb->ifindex, 0);
}

/* ICMP port unreachable for a UDP datagram to a VIP without a backend: the
 * packet becomes IP + ICMP + the original IP header and 8 bytes (RFC 792). */
static __always_inline int lb_send_port_unreachable(struct __sk_buff *skb,
						    const struct lb_flow *flow)
{
	struct {
		struct lb_raw_iphdr ip;
		struct lb_raw_icmphdr icmp;
		struct lb_raw_iphdr orig_ip;
		__u8 orig_l4[8];
	} l3 = {};
	struct ethhdr eth = {};
	__s64 sum;

	if (bpf_skb_load_bytes(skb, ETH_ALEN, eth.h_dest, ETH_ALEN) ||
	    bpf_skb_load_bytes(skb, LB_IP_OFF, &l3.orig_ip, sizeof(l3.orig_ip)) ||
	    bpf_skb_load_bytes(skb, LB_L4_OFF, l3.orig_l4, sizeof(l3.orig_l4))) {
		lb_stat_inc(LB_STAT_DROP_NO_BACKEND);
		return TC_ACT_SHOT;
	}
	lb_mac_from_ip(eth.h_source, flow->daddr);
	eth.h_proto = bpf_htons(ETH_P_IP);
	l3.icmp.type = ICMP_DEST_UNREACH;
	l3.icmp.code = ICMP_PORT_UNREACH;
	sum = bpf_csum_diff(0, 0, (void *)&l3.icmp,
			    sizeof(l3.icmp) + sizeof(l3.orig_ip) + sizeof(l3.orig_l4), 0);
	l3.icmp.check = lb_csum_fold((__u32)sum);
	lb_fill_ip(&l3.ip, IPPROTO_ICMP, sizeof(l3), flow->daddr, flow->saddr);

	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(l3), 0) ||
	    bpf_skb_store_bytes(skb, 0, &eth, ETH_HLEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, &l3, sizeof(l3), 0)) {
		lb_stat_inc(LB_STAT_DROP_NO_BACKEND);
		return TC_ACT_SHOT;
	}
	lb_stat_inc(LB_STAT_ICMP_UNREACH);
	return bpf_redirect(skb->ifindex, 0);
}

/* Nothing to balance to: RST for TCP, port unreachable for UDP. */
static __always_inline int lb_refuse(struct __sk_buff *skb, const struct lb_flow *flow,
				     __u32 tcp_stat)
{
	if (flow->proto == IPPROTO_TCP)
		return lb_send_rst(skb, flow, tcp_stat);
	return lb_send_port_unreachable(skb, flow);
}

#endif
