// Batched DNS load generator: keeps a window of queries in flight with
// sendmmsg/recvmmsg on one UDP socket, for A queries of name0..nameN-1.
// dnsperf saturates near 150k queries/s on this machine, below the servers
// it should measure. Prints one line: qps, mean and p99 latency in us, lost.
//   dns_loadgen IP PORT SECONDS [--window N] [--names N] [--rate QPS]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::vector<uint8_t> query(const std::string& name, uint16_t id) {
  std::vector<uint8_t> q = {static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  q.push_back(static_cast<uint8_t>(name.size()));
  q.insert(q.end(), name.begin(), name.end());
  q.insert(q.end(), {0, 0, 1, 0, 1});
  return q;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: dns_loadgen IP PORT SECONDS [--window N] [--names N] [--rate QPS]\n");
    return 2;
  }
  std::size_t window = 256, names = 100;
  double rate = 0;
  for (int i = 4; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--window") window = std::strtoul(argv[i + 1], nullptr, 10);
    else if (flag == "--names") names = std::strtoul(argv[i + 1], nullptr, 10);
    else if (flag == "--rate") rate = std::strtod(argv[i + 1], nullptr);
  }
  window = std::clamp<std::size_t>(window, 1, 4096);
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) return 2;
  const double seconds = std::strtod(argv[3], nullptr);

  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  int size = 4 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) {
    std::perror("connect");
    return 1;
  }
  // Queries prebuilt per (id slot, name); an ID's send time is its slot.
  std::vector<std::vector<uint8_t>> prebuilt;
  std::vector<Clock::time_point> sent_at(65536);
  std::vector<bool> pending(65536, false);
  std::vector<uint32_t> latencies_ns;
  latencies_ns.reserve(8 << 20);
  uint16_t next_id = 0;
  std::size_t in_flight = 0, answered = 0, lost = 0, sent = 0, next_name = 0;
  constexpr std::size_t batch = 64;
  std::array<mmsghdr, batch> msgs{};
  std::array<iovec, batch> iovs{};
  std::array<std::array<uint8_t, 512>, batch> in{};
  std::vector<std::vector<uint8_t>> out(batch);
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto last_sweep = start;
  for (auto now = start; now < end; now = Clock::now()) {
    // Send up to the window (and the rate).
    std::size_t can = window > in_flight ? window - in_flight : 0;
    if (rate > 0) {
      const double allowed = rate * std::chrono::duration<double>(now - start).count() - static_cast<double>(sent);
      can = std::min<std::size_t>(can, allowed > 0 ? static_cast<std::size_t>(allowed) : 0);
    }
    can = std::min(can, batch);
    std::size_t n = 0;
    for (; n < can; ++n) {
      while (pending[next_id]) ++next_id;
      out[n] = query("name" + std::to_string(next_name++ % names), next_id);
      sent_at[next_id] = now;
      pending[next_id] = true;
      ++next_id;
      iovs[n] = iovec{out[n].data(), out[n].size()};
      msgs[n] = mmsghdr{};
      msgs[n].msg_hdr.msg_iov = &iovs[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
    }
    if (n > 0) {
      int done = ::sendmmsg(fd, msgs.data(), static_cast<unsigned>(n), 0);
      std::size_t ok = done > 0 ? static_cast<std::size_t>(done) : 0;
      for (std::size_t k = ok; k < n; ++k) pending[static_cast<uint16_t>(out[k][0] << 8 | out[k][1])] = false;
      in_flight += ok;
      sent += ok;
    }
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, in_flight >= window || n == 0 ? 1 : 0);
    for (std::size_t k = 0; k < batch; ++k) {
      iovs[k] = iovec{in[k].data(), in[k].size()};
      msgs[k] = mmsghdr{};
      msgs[k].msg_hdr.msg_iov = &iovs[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    int got = ::recvmmsg(fd, msgs.data(), batch, MSG_DONTWAIT, nullptr);
    const auto received = Clock::now();
    for (int k = 0; k < got; ++k) {
      if (msgs[static_cast<std::size_t>(k)].msg_len < 12) continue;
      const uint16_t id = static_cast<uint16_t>(in[static_cast<std::size_t>(k)][0] << 8 | in[static_cast<std::size_t>(k)][1]);
      if (!pending[id]) continue;
      pending[id] = false;
      --in_flight;
      ++answered;
      latencies_ns.push_back(static_cast<uint32_t>(
          std::min<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(received - sent_at[id]).count(), UINT32_MAX)));
    }
    // Queries unanswered after a second are lost; their IDs are reused.
    if (received - last_sweep > std::chrono::milliseconds(200)) {
      last_sweep = received;
      for (std::size_t id = 0; id < pending.size(); ++id)
        if (pending[id] && received - sent_at[id] > std::chrono::seconds(1)) {
          pending[id] = false;
          --in_flight;
          ++lost;
        }
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  double mean = 0, p99 = 0;
  if (!latencies_ns.empty()) {
    double sum = 0;
    for (auto l : latencies_ns) sum += l;
    mean = sum / static_cast<double>(latencies_ns.size()) / 1000.0;
    auto at = latencies_ns.begin() + static_cast<std::ptrdiff_t>(latencies_ns.size() * 99 / 100);
    std::nth_element(latencies_ns.begin(), at, latencies_ns.end());
    p99 = *at / 1000.0;
  }
  std::printf("qps=%.0f mean_us=%.1f p99_us=%.1f answered=%zu lost=%zu\n", static_cast<double>(answered) / elapsed,
              mean, p99, answered, lost + in_flight);
  ::close(fd);
  return answered > 0 ? 0 : 1;
}
