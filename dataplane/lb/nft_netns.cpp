#include "dataplane/lb/nft_netns.h"

#include "dataplane/lb/nft_ruleset.h"
#include "dataplane/netlink.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <system_error>
#include <vector>

namespace weft::dataplane::lb::nft {
namespace {

// Appends one netlink attribute to a message buffer.
void put_attr(std::vector<char>& msg, std::uint16_t type, const void* data, std::size_t len) {
  nlattr attr{};
  attr.nla_len = static_cast<std::uint16_t>(NLA_HDRLEN + len);
  attr.nla_type = type;
  const std::size_t at = msg.size();
  msg.resize(at + NLA_ALIGN(attr.nla_len), 0);
  std::memcpy(msg.data() + at, &attr, sizeof attr);
  std::memcpy(msg.data() + at + NLA_HDRLEN, data, len);
}

// Sends a request with NLM_F_ACK and returns the kernel's errno (0: done).
int send_and_ack(int fd, std::vector<char>& msg, std::uint32_t seq) {
  auto* hdr = reinterpret_cast<nlmsghdr*>(msg.data());
  hdr->nlmsg_len = static_cast<std::uint32_t>(msg.size());
  hdr->nlmsg_seq = seq;
  hdr->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  if (::send(fd, msg.data(), msg.size(), 0) < 0) return errno;
  alignas(nlmsghdr) std::array<char, 8192> buf;
  for (;;) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, static_cast<unsigned>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
      return -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
    }
  }
}

void write_sysctl(const std::string& path, const char* value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd || ::write(fd.get(), value, std::strlen(value)) < 0)
    throw std::system_error(errno, std::generic_category(), "write " + path);
}

}  // namespace

NetnsHandle duplicate(const NetnsHandle& ns) { return NetnsHandle::open("/proc/self/fd/" + std::to_string(ns.fd())); }

NftContext::NftContext(NetnsHandle ns) : ns_(std::move(ns)) {
  // The context's netlink socket belongs to the namespace it is opened in.
  NetnsGuard guard(ns_);
  ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx_) throw NftError("nft_ctx_new failed");
  nft_ctx_buffer_output(ctx_);
  nft_ctx_buffer_error(ctx_);
}

NftContext::~NftContext() {
  if (ctx_) nft_ctx_free(ctx_);
}

std::string NftContext::run(const std::string& commands, const std::string& what) {
  // libnftables may reopen its socket: keep every call in the namespace.
  NetnsGuard guard(ns_);
  const int rc = nft_run_cmd_from_buffer(ctx_, commands.c_str());
  std::string out = nft_ctx_get_output_buffer(ctx_);
  if (rc != 0) {
    std::string err = nft_ctx_get_error_buffer(ctx_);
    if (err.size() > 2000) err = err.substr(0, 2000) + "...";
    throw NftError("nftables: " + what + ": " + err);
  }
  return out;
}

std::string NftContext::list_json(const std::string& what_to_list) {
  const unsigned flags = nft_ctx_output_get_flags(ctx_);
  nft_ctx_output_set_flags(ctx_, flags | NFT_CTX_OUTPUT_JSON);
  try {
    std::string out = run("list " + what_to_list, "list " + what_to_list);
    nft_ctx_output_set_flags(ctx_, flags);
    return out;
  } catch (...) {
    nft_ctx_output_set_flags(ctx_, flags);
    throw;
  }
}

namespace {

struct SetFree {
  void operator()(nftnl_set* set) const { nftnl_set_free(set); }
};

// Elements per message: ~80 bytes each at most (a verdict with its chain's
// name), well inside the message buffer.
constexpr std::size_t kElementsPerMessage = 256;

}  // namespace

NftElementWriter::NftElementWriter(const NetnsHandle& ns)
    : fd_(open_socket_in(ns, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER)) {
  // A failed message's reply then carries its header, not the whole message.
  const int on = 1;
  ::setsockopt(fd_.get(), SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof on);
}

void NftElementWriter::send(const Commands& c, const std::string& what) {
  std::vector<char> batch;
  std::vector<const std::string*> map_of;  // the map of each element message, in order
  std::vector<char> buf(1 << 17);  // one message at a time
  auto append = [&](const nlmsghdr* h) {
    const char* at = reinterpret_cast<const char*>(h);
    batch.insert(batch.end(), at, at + NLMSG_ALIGN(h->nlmsg_len));
  };
  const std::uint32_t begin_seq = ++seq_;
  append(static_cast<nlmsghdr*>(nftnl_batch_begin(buf.data(), begin_seq)));
  auto put = [&](std::uint16_t type, std::uint16_t flags, const std::vector<MapChanges>& list) {
    for (const auto& m : list) {
      for (std::size_t at = 0; at < m.elements.size(); at += kElementsPerMessage) {
        std::unique_ptr<nftnl_set, SetFree> set(nftnl_set_alloc());
        if (!set) throw std::bad_alloc();
        nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, c.table().c_str());
        nftnl_set_set_str(set.get(), NFTNL_SET_NAME, m.map.c_str());
        nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, NFPROTO_IPV4);
        const std::size_t end = std::min(m.elements.size(), at + kElementsPerMessage);
        for (std::size_t i = at; i < end; ++i) {
          const Element& e = m.elements[i];
          nftnl_set_elem* elem = nftnl_set_elem_alloc();
          if (!elem) throw std::bad_alloc();
          nftnl_set_elem_add(set.get(), elem);  // the set frees it
          nftnl_set_elem_set(elem, NFTNL_SET_ELEM_KEY, e.key.data(), e.key_len);
          if (e.data_len) nftnl_set_elem_set(elem, NFTNL_SET_ELEM_DATA, e.data.data(), e.data_len);
          if (e.goto_pick) {
            nftnl_set_elem_set_u32(elem, NFTNL_SET_ELEM_VERDICT, static_cast<std::uint32_t>(NFT_GOTO));
            nftnl_set_elem_set_str(elem, NFTNL_SET_ELEM_CHAIN, fmt::format("pick_{}", e.goto_pick).c_str());
          }
        }
        nlmsghdr* h = nftnl_nlmsg_build_hdr(buf.data(), type, NFPROTO_IPV4, flags | NLM_F_ACK, ++seq_);
        nftnl_set_elems_nlmsg_build_payload(h, set.get());
        append(h);
        map_of.push_back(&m.map);
      }
    }
  };
  put(NFT_MSG_DELSETELEM, 0, c.deletes());
  put(NFT_MSG_NEWSETELEM, NLM_F_CREATE, c.adds());
  if (map_of.empty()) return;
  append(static_cast<nlmsghdr*>(nftnl_batch_end(buf.data(), ++seq_)));

  const int fd = fd_.get();
  const int sndbuf = static_cast<int>(std::min<std::size_t>(batch.size() + 65536, INT_MAX / 2));
  const int rcvbuf = static_cast<int>(std::min<std::size_t>((map_of.size() + 16) * 2048, INT_MAX / 2));
  // The batch goes in one send(), which netlink refuses beyond the send
  // buffer. The *FORCE options need CAP_NET_ADMIN in the initial user
  // namespace; without it the buffers are what net.core.[wr]mem_max allow,
  // and a batch larger than that is refused naming the buffer.
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (::send(fd, batch.data(), batch.size(), 0) < 0) {
    const int err = errno;
    int got = 0;
    socklen_t len = sizeof got;
    ::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len);
    throw NftError(fmt::format("nftables: {}: send of {} bytes (socket send buffer {} bytes): {}", what,
                               batch.size(), got, std::strerror(err)));
  }
  // nfnetlink runs the whole batch inside send(): every reply is queued by
  // now (one per message; an error aborts the transaction).
  std::size_t replies = 0;
  int error = 0;
  std::string error_map;
  std::vector<char> in(1 << 16);
  for (;;) {
    const ssize_t n = ::recv(fd, in.data(), in.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      throw NftError(fmt::format("nftables: {}: replies: {}", what, std::strerror(errno)));
    }
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(in.data()); NLMSG_OK(h, static_cast<unsigned>(left));
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq < begin_seq || h->nlmsg_seq > seq_) continue;
      ++replies;
      const int err = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
      if (err == 0 || error) continue;
      error = err;
      const std::size_t index = h->nlmsg_seq - begin_seq - 1;
      error_map = index < map_of.size() ? *map_of[index] : "batch";
    }
  }
  if (error) throw NftError(fmt::format("nftables: {}: map {}: {}", what, error_map, std::strerror(error)));
  if (replies != map_of.size())
    throw NftError(fmt::format("nftables: {}: {} replies to {} messages", what, replies, map_of.size()));
}

VipRoutes::VipRoutes(const NetnsHandle& ns, std::string bridge) : bridge_(std::move(bridge)) {
  fd_ = open_socket_in(ns, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  NetnsGuard guard(ns);
  ifindex_ = static_cast<int>(::if_nametoindex(bridge_.c_str()));
  if (ifindex_ == 0) throw std::system_error(errno, std::generic_category(), "no bridge " + bridge_);
}

void VipRoutes::request(std::uint16_t type, std::uint16_t flags, std::uint32_t ip, const char* what) {
  std::vector<char> msg(NLMSG_LENGTH(sizeof(rtmsg)), 0);
  auto* hdr = reinterpret_cast<nlmsghdr*>(msg.data());
  hdr->nlmsg_type = type;
  hdr->nlmsg_flags = flags;
  auto* rtm = static_cast<rtmsg*>(NLMSG_DATA(hdr));
  rtm->rtm_family = AF_INET;
  rtm->rtm_dst_len = 32;
  rtm->rtm_table = RT_TABLE_LOCAL;
  rtm->rtm_protocol = kRouteProtocol;
  rtm->rtm_scope = RT_SCOPE_HOST;
  rtm->rtm_type = RTN_LOCAL;
  const std::uint32_t net_ip = htonl(ip);
  const std::uint32_t oif = static_cast<std::uint32_t>(ifindex_);
  put_attr(msg, RTA_DST, &net_ip, 4);
  put_attr(msg, RTA_OIF, &oif, 4);
  const int err = send_and_ack(fd_.get(), msg, ++seq_);
  if (err == 0 || (type == RTM_DELROUTE && err == ESRCH)) return;
  throw std::system_error(err, std::generic_category(), std::string(what) + " " + ipv4_text(ip) + " on " + bridge_);
}

void VipRoutes::add(std::uint32_t ip) { request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, ip, "add VIP route"); }

void VipRoutes::remove(std::uint32_t ip) { request(RTM_DELROUTE, 0, ip, "remove VIP route"); }

std::set<std::uint32_t> VipRoutes::list() {
  std::vector<char> msg(NLMSG_LENGTH(sizeof(rtmsg)), 0);
  auto* hdr = reinterpret_cast<nlmsghdr*>(msg.data());
  hdr->nlmsg_len = static_cast<std::uint32_t>(msg.size());
  hdr->nlmsg_type = RTM_GETROUTE;
  hdr->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  hdr->nlmsg_seq = ++seq_;
  static_cast<rtmsg*>(NLMSG_DATA(hdr))->rtm_family = AF_INET;
  if (::send(fd_.get(), msg.data(), msg.size(), 0) < 0)
    throw std::system_error(errno, std::generic_category(), "list routes");
  std::set<std::uint32_t> found;
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "list routes");
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, static_cast<unsigned>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq_) continue;
      if (h->nlmsg_type == NLMSG_DONE) return found;
      if (h->nlmsg_type == NLMSG_ERROR)
        throw std::system_error(-static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error, std::generic_category(),
                                "list routes");
      if (h->nlmsg_type != RTM_NEWROUTE) continue;
      const auto* rtm = static_cast<const rtmsg*>(NLMSG_DATA(h));
      if (rtm->rtm_protocol != kRouteProtocol || rtm->rtm_type != RTN_LOCAL || rtm->rtm_dst_len != 32) continue;
      std::uint32_t dst = 0, oif = 0;
      int len = static_cast<int>(RTM_PAYLOAD(h));
      for (auto* a = RTM_RTA(rtm); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == RTA_DST && RTA_PAYLOAD(a) == 4) std::memcpy(&dst, RTA_DATA(a), 4);
        if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) == 4) std::memcpy(&oif, RTA_DATA(a), 4);
      }
      if (dst && static_cast<int>(oif) == ifindex_) found.insert(ntohl(dst));
    }
  }
}

void reconcile_snat_mac(const NetnsHandle& ns, const std::string& bridge, std::uint32_t snat_ip) {
  NetlinkSocket net(ns);
  const MacAddress own = net.get_link(bridge).mac;
  std::optional<MacAddress> wanted;
  if (snat_ip) wanted = MacAddress::from_ipv4(Ipv4{snat_ip});
  bool present = false;
  for (const MacAddress& mac : net.list_local_fdb(bridge)) {
    if (wanted && mac == *wanted) {
      present = true;
      continue;
    }
    // Only weft's scheme: the bridge also lists its own MAC and the
    // multicast addresses it has joined.
    if (mac == own || mac.bytes[0] != 0x02 || mac.bytes[1] != 0x42) continue;
    net.delete_local_fdb(bridge, mac);
  }
  if (wanted && !present) net.add_local_fdb(bridge, *wanted);
}

void enable_forwarding(const NetnsHandle& ns, const std::string& bridge) {
  // /proc/sys/net resolves against the namespace of the thread that opens it.
  NetnsGuard guard(ns);
  write_sysctl("/proc/sys/net/ipv4/conf/all/send_redirects", "0");
  write_sysctl("/proc/sys/net/ipv4/conf/" + bridge + "/send_redirects", "0");
  write_sysctl("/proc/sys/net/ipv4/ip_forward", "1");
}

bool delete_conntrack_by_mark(const NetnsHandle& ns, std::uint32_t mark) {
  // IPCTNL_MSG_CT_DELETE without a tuple flushes, filtered by CTA_MARK/MASK.
  UniqueFd fd = open_socket_in(ns, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  std::vector<char> msg(NLMSG_LENGTH(sizeof(nfgenmsg)), 0);
  auto* hdr = reinterpret_cast<nlmsghdr*>(msg.data());
  hdr->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
  auto* nfg = static_cast<nfgenmsg*>(NLMSG_DATA(hdr));
  nfg->nfgen_family = AF_INET;
  nfg->version = NFNETLINK_V0;
  const std::uint32_t net_mark = htonl(mark), mask = 0xffffffffu;
  put_attr(msg, CTA_MARK, &net_mark, 4);
  put_attr(msg, CTA_MARK_MASK, &mask, 4);
  const int err = send_and_ack(fd.get(), msg, 1);
  return err == 0 || err == ENOENT;
}

}  // namespace weft::dataplane::lb::nft
