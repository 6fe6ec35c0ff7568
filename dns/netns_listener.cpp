#include "dns/netns_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <utility>

#include "dataplane/unique_fd.h"

namespace weft::dns {
namespace {

using dataplane::UniqueFd;

constexpr int listen_backlog = 128;

std::string describe(int error) { return std::strerror(error); }

struct Opened {
  UniqueFd udp;
  UniqueFd tcp;
  dev_t device = 0;
  ino_t inode = 0;
  int error = 0;
  std::string message;
};

std::string where_text(const ListenAddress& where, const char* proto, const std::filesystem::path& ns) {
  return where.address.to_string() + ":" + std::to_string(where.port) + "/" + proto + " in namespace " + ns.string();
}

bool bring_lo_up(Opened& out, const std::filesystem::path& ns) {
  UniqueFd control(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!control) {
    out.error = errno;
    out.message = "socket in namespace " + ns.string() + ": " + describe(out.error);
    return false;
  }
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(control.get(), SIOCGIFFLAGS, &request) != 0) {
    out.error = errno;
    out.message = "read the flags of lo in namespace " + ns.string() + ": " + describe(out.error);
    return false;
  }
  if (request.ifr_flags & IFF_UP) return true;
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(control.get(), SIOCSIFFLAGS, &request) != 0) {
    out.error = errno;
    out.message = "bring lo up in namespace " + ns.string() + ": " + describe(out.error);
    return false;
  }
  return true;
}

UniqueFd bound_socket(Opened& out, int type, const ListenAddress& where, const std::filesystem::path& ns) {
  const char* proto = type == SOCK_DGRAM ? "udp" : "tcp";
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    out.error = errno;
    out.message = std::string("open a ") + proto + " socket in namespace " + ns.string() + ": " + describe(out.error);
    return {};
  }
  if (type == SOCK_STREAM) {
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(where.port);
  address.sin_addr.s_addr = htonl(where.address.to_uint());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    out.error = errno;
    out.message = where_text(where, proto, ns) +
                  (out.error == EADDRINUSE ? " is taken: " : " cannot be bound: ") + describe(out.error);
    return {};
  }
  if (type == SOCK_STREAM && ::listen(fd.get(), listen_backlog) != 0) {
    out.error = errno;
    out.message = "listen on " + where_text(where, proto, ns) + ": " + describe(out.error);
    return {};
  }
  return fd;
}

// Runs on a thread of its own: setns() changes only the calling thread, and
// this one ends right after, so nothing else ever runs in the namespace.
void open_inside(Opened& out, const std::filesystem::path& ns, const ListenAddress& where) {
  UniqueFd ns_fd(::open(ns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns_fd) {
    out.error = errno;
    out.message = out.error == ENOENT ? "namespace " + ns.string() + " is gone"
                                      : "open namespace " + ns.string() + ": " + describe(out.error);
    return;
  }
  if (::ioctl(ns_fd.get(), NS_GET_NSTYPE) != CLONE_NEWNET) {
    out.error = EINVAL;
    out.message = ns.string() + " is not a network namespace";
    return;
  }
  struct stat identity {};
  if (::fstat(ns_fd.get(), &identity) == 0) {
    out.device = identity.st_dev;
    out.inode = identity.st_ino;
  }
  if (::setns(ns_fd.get(), CLONE_NEWNET) != 0) {
    out.error = errno;
    out.message = "enter namespace " + ns.string() + ": " + describe(out.error);
    return;
  }
  if (!bring_lo_up(out, ns)) return;
  out.udp = bound_socket(out, SOCK_DGRAM, where, ns);
  if (!out.udp) return;
  out.tcp = bound_socket(out, SOCK_STREAM, where, ns);
  if (!out.tcp) out.udp.reset();
}

}  // namespace

DnsSockets open_dns_sockets(boost::asio::io_context& io, const std::filesystem::path& netns_path,
                            ListenAddress where) {
  Opened opened;
  std::thread worker([&] { open_inside(opened, netns_path, where); });
  worker.join();
  if (opened.error != 0) throw ListenError(opened.error, opened.message);

  DnsSockets sockets{boost::asio::ip::udp::socket(io), boost::asio::ip::tcp::acceptor(io), opened.device,
                     opened.inode};
  boost::system::error_code ec;
  sockets.udp.assign(boost::asio::ip::udp::v4(), opened.udp.get(), ec);
  if (ec) throw ListenError(ec.value(), "serve " + where_text(where, "udp", netns_path) + ": " + ec.message());
  opened.udp.release();
  sockets.tcp.assign(boost::asio::ip::tcp::v4(), opened.tcp.get(), ec);
  if (ec) throw ListenError(ec.value(), "serve " + where_text(where, "tcp", netns_path) + ": " + ec.message());
  opened.tcp.release();
  return sockets;
}

}  // namespace weft::dns
