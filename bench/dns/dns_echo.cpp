// The physical limit of the machine for the DNS bench: a batched UDP server
// that sends every datagram back with the QR bit set (recvmmsg/sendmmsg,
// no parsing). dns_echo IP PORT
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: dns_echo IP PORT\n");
    return 2;
  }
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    std::perror("bind");
    return 1;
  }
  constexpr unsigned batch = 32;
  std::array<mmsghdr, batch> msgs{};
  std::array<iovec, batch> iovs{};
  std::array<sockaddr_storage, batch> peers{};
  std::array<std::array<unsigned char, 4096>, batch> buffers{};
  for (;;) {
    for (unsigned i = 0; i < batch; ++i) {
      iovs[i] = iovec{buffers[i].data(), buffers[i].size()};
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_name = &peers[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = ::recvmmsg(fd, msgs.data(), batch, MSG_WAITFORONE, nullptr);
    if (n <= 0) continue;
    for (int i = 0; i < n; ++i) {
      buffers[static_cast<unsigned>(i)][2] |= 0x80;
      iovs[static_cast<unsigned>(i)].iov_len = msgs[static_cast<unsigned>(i)].msg_len;
    }
    ::sendmmsg(fd, msgs.data(), static_cast<unsigned>(n), 0);
  }
}
