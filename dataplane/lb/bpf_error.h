// Errors of the eBPF load balancer: what failed (operation and map or
// program name) and the errno.
#pragma once

#include <cerrno>
#include <string>
#include <system_error>

namespace weft::dataplane::lb {

class BpfError : public std::system_error {
 public:
  // `what` names the operation and its object, e.g. "update map lb_services".
  BpfError(int err, const std::string& what)
      : std::system_error(err < 0 ? -err : err, std::generic_category(), what) {}
};

}  // namespace weft::dataplane::lb
