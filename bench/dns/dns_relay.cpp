// The physical limit of forwarding for the DNS bench, as dns_echo is the
// limit of answering: a UDP relay that passes every query to one upstream
// and every answer back to the client that asked, with no parsing, no ID
// of its own and no timeout (clients' IDs are assumed unique among the
// queries in flight, which holds for dnsperf and dns_loadgen). One epoll
// set registered once (level-triggered: no re-arming call per wake-up),
// recvmmsg/sendmmsg in batches. What it adds over the upstream's own
// latency is what any forwarder on this machine adds: the extra hop's
// deliveries and wake-ups.
//   dns_relay IP PORT UPSTREAM_IP UPSTREAM_PORT
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr unsigned batch = 32;

struct Batch {
  std::array<mmsghdr, batch> msgs{};
  std::array<iovec, batch> iovs{};
  std::array<sockaddr_in, batch> peers{};
  std::array<std::array<unsigned char, 4096>, batch> buffers{};
  void prepare() {
    for (unsigned i = 0; i < batch; ++i) {
      iovs[i] = iovec{buffers[i].data(), buffers[i].size()};
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_name = &peers[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
  }
};

bool parse(const char* ip, const char* port, sockaddr_in& out) {
  out = sockaddr_in{};
  out.sin_family = AF_INET;
  out.sin_port = htons(static_cast<uint16_t>(std::atoi(port)));
  return inet_pton(AF_INET, ip, &out.sin_addr) == 1;
}

}  // namespace

int main(int argc, char** argv) {
  sockaddr_in listen_at{}, upstream{};
  if (argc != 5 || !parse(argv[1], argv[2], listen_at) || !parse(argv[3], argv[4], upstream)) {
    std::fprintf(stderr, "usage: dns_relay IP PORT UPSTREAM_IP UPSTREAM_PORT\n");
    return 2;
  }
  const int clients = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  const int up = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (::bind(clients, reinterpret_cast<sockaddr*>(&listen_at), sizeof listen_at) != 0 ||
      ::connect(up, reinterpret_cast<sockaddr*>(&upstream), sizeof upstream) != 0) {
    std::perror("dns_relay: bind/connect");
    return 1;
  }
  const int ep = ::epoll_create1(0);
  for (int fd : {clients, up}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  std::vector<sockaddr_in> asked_by(65536);  // client ID -> who asked
  Batch datagrams;
  for (;;) {
    std::array<epoll_event, 2> ready{};
    const int n = ::epoll_wait(ep, ready.data(), static_cast<int>(ready.size()), -1);
    for (int e = 0; e < n; ++e) {
      const int fd = ready[static_cast<unsigned>(e)].data.fd;
      datagrams.prepare();
      const int got = ::recvmmsg(fd, datagrams.msgs.data(), batch, MSG_DONTWAIT, nullptr);
      if (got <= 0) continue;
      // Sent on as received, from the same buffers.
      for (int i = 0; i < got; ++i) {
        const auto k = static_cast<unsigned>(i);
        auto& hdr = datagrams.msgs[k].msg_hdr;
        datagrams.iovs[k].iov_len = datagrams.msgs[k].msg_len;
        const unsigned id = datagrams.buffers[k][0] << 8 | datagrams.buffers[k][1];
        if (fd == clients) {
          asked_by[id] = datagrams.peers[k];
          hdr.msg_name = nullptr;  // the upstream socket is connected
          hdr.msg_namelen = 0;
        } else {
          datagrams.peers[k] = asked_by[id];
          hdr.msg_namelen = sizeof(sockaddr_in);
        }
      }
      ::sendmmsg(fd == clients ? up : clients, datagrams.msgs.data(), static_cast<unsigned>(got), MSG_DONTWAIT);
    }
  }
}
