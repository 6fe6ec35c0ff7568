/* Constants the BPF programs need that vmlinux.h cannot carry (#defines in
 * UAPI headers, which do not build under clang -target bpf). */
#ifndef WEFT_EBPF_LB_CONSTS_H
#define WEFT_EBPF_LB_CONSTS_H

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define TC_ACT_REDIRECT 7

#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806

#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP_DF 0x4000

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_PORT_UNREACH 3
#define ICMP_ECHO 8

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_PSH 0x08
#define TCP_FLAG_ACK 0x10

#define LB_REPLY_TTL 64

/* Offsets with a fixed 20-byte IPv4 header: VIP traffic with IP options is
 * dropped (and counted), which keeps every offset below a constant. */
#define LB_IP_OFF ETH_HLEN
#define LB_L4_OFF (ETH_HLEN + 20)
#define LB_IP_CSUM_OFF (LB_IP_OFF + 10)
#define LB_IP_SADDR_OFF (LB_IP_OFF + 12)
#define LB_IP_DADDR_OFF (LB_IP_OFF + 16)
#define LB_TCP_CSUM_OFF (LB_L4_OFF + 16)
#define LB_UDP_CSUM_OFF (LB_L4_OFF + 6)

/* weft derives MACs from IPv4 addresses: 02:42:<4 address bytes>. */
#define LB_MAC_PREFIX0 0x02
#define LB_MAC_PREFIX1 0x42

#endif
