// An in-memory ServiceApi for API and CLI tests: names unique, lookups by
// name, id or id prefix, NotFound/Conflict errors like the real one; records
// what it was asked. Services are made with add() or create_service().
#pragma once

#include <algorithm>
#include <exception>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "control/model/service_model.h"

namespace weft::control::test_support {

class FakeServiceApi : public ServiceApi {
 public:
  // Thrown by the next call, then cleared.
  std::exception_ptr fail_next;

  std::vector<ServiceDetail> services;
  std::vector<ServiceSpec> create_requests;
  std::vector<std::string> get_requests;
  std::vector<std::string> remove_requests;
  std::vector<LbLookupRequest> lookup_requests;
  // What lookup() answers (its service_id is filled from the service found).
  LbLookupResult lookup_result;

  // 64 hex characters whose first two differ between n = 1..255.
  static std::string make_id(int n) {
    std::string id;
    for (int i = 0; i < 32; ++i) id += fmt::format("{:02x}", (0xa0 + n) % 256);
    return id;
  }

  void add(ServiceDetail detail) {
    std::lock_guard lock(mutex_);
    services.push_back(std::move(detail));
  }

  Service create_service(const ServiceSpec& spec) override {
    std::lock_guard lock(mutex_);
    maybe_fail();
    create_requests.push_back(spec);
    if (find(spec.name) != services.end()) {
      throw ApiError(ApiError::Kind::Conflict, "service " + spec.name + " already exists");
    }
    ServiceDetail detail;
    detail.service.id = make_id(static_cast<int>(++created_));
    detail.service.name = spec.name;
    detail.service.network_ids = spec.networks;
    detail.service.created = "2024-05-01T12:00:00Z";
    detail.service.node = "node-1";
    services.push_back(detail);
    return detail.service;
  }

  std::vector<ServiceDetail> list_services() override {
    std::lock_guard lock(mutex_);
    maybe_fail();
    return services;
  }

  ServiceDetail get_service(const std::string& name_or_id) override {
    std::lock_guard lock(mutex_);
    maybe_fail();
    get_requests.push_back(name_or_id);
    return *existing(name_or_id);
  }

  void remove_service(const std::string& name_or_id) override {
    std::lock_guard lock(mutex_);
    maybe_fail();
    remove_requests.push_back(name_or_id);
    services.erase(existing(name_or_id));
  }

  LbLookupResult lookup(const LbLookupRequest& request) override {
    std::lock_guard lock(mutex_);
    maybe_fail();
    lookup_requests.push_back(request);
    LbLookupResult result = lookup_result;
    result.service_id = existing(request.service)->service.id;
    return result;
  }

 private:
  void maybe_fail() {
    if (fail_next) std::rethrow_exception(std::exchange(fail_next, nullptr));
  }

  std::vector<ServiceDetail>::iterator find(const std::string& name_or_id) {
    auto it = std::find_if(services.begin(), services.end(), [&](const ServiceDetail& d) {
      return d.service.name == name_or_id || d.service.id == name_or_id;
    });
    if (it != services.end() || name_or_id.empty()) return it;
    return std::find_if(services.begin(), services.end(),
                        [&](const ServiceDetail& d) { return d.service.id.starts_with(name_or_id); });
  }

  std::vector<ServiceDetail>::iterator existing(const std::string& name_or_id) {
    auto it = find(name_or_id);
    if (it == services.end()) throw ApiError(ApiError::Kind::NotFound, "service " + name_or_id + " not found");
    return it;
  }

  std::mutex mutex_;
  unsigned created_ = 0;
};

}  // namespace weft::control::test_support
