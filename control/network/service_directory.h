// What the network manager needs to know about services to make an endpoint
// a service backend (`endpoint attach --service`): implemented by the
// service manager (control/services), which sits above the network manager.
#pragma once

#include <optional>
#include <string>

#include "control/model/service_model.h"

namespace weft::control::network {

class ServiceDirectory {
 public:
  virtual ~ServiceDirectory() = default;
  // The service a name, id or unique id prefix names; nullopt when none
  // does; ApiError when the reference is malformed or ambiguous. Called
  // without any lock of the network manager held.
  virtual std::optional<Service> find(const std::string& name_or_id) = 0;
};

}  // namespace weft::control::network
