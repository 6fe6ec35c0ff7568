// Opens the DNS sockets a container reaches at 127.0.0.11:53, inside the
// container's network namespace. The namespace is entered only on a
// short-lived thread of its own, so no caller ever runs in a foreign
// namespace; the sockets stay bound to that namespace for their life and
// are served by the agent's io_context like any other (Server::add_udp/add_tcp).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>

namespace weft::dns {

struct ListenAddress {
  boost::asio::ip::address_v4 address = boost::asio::ip::make_address_v4("127.0.0.11");
  uint16_t port = 53;
};

struct DnsSockets {
  boost::asio::ip::udp::socket udp;
  boost::asio::ip::tcp::acceptor tcp;
  // The namespace's identity (its nsfs file), so the owner can tell later
  // whether the path still names the namespace the sockets live in.
  dev_t netns_device = 0;
  ino_t netns_inode = 0;
};

// Why the sockets could not be opened; the message names the namespace and
// the address ("namespace /run/netns/c1 is gone", "127.0.0.11:53/udp in
// namespace ... is taken"). `error` is the errno behind it.
class ListenError : public std::runtime_error {
 public:
  ListenError(int error, const std::string& message) : std::runtime_error(message), error_(error) {}
  int error() const { return error_; }

 private:
  int error_;
};

// Brings `lo` up in the namespace when it is down (127.0.0.0/8 lives on it),
// then binds UDP and a listening TCP socket (SO_REUSEADDR, so a detach and a
// re-attach do not wait for TIME_WAIT) on `where`. Throws ListenError.
DnsSockets open_dns_sockets(boost::asio::io_context& io, const std::filesystem::path& netns_path,
                            ListenAddress where = {});

}  // namespace weft::dns
