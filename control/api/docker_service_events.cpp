#include "control/api/docker_service_events.h"

namespace weft::control::api {

std::vector<ServiceEvent> ServiceEventDiff::next(const std::vector<ServiceDetail>& services) {
  std::map<std::string, Seen> now;
  for (const ServiceDetail& detail : services) {
    const Service& s = detail.service;
    now[s.id] = Seen{s.name, s.version, s.replicas};
  }
  std::vector<ServiceEvent> events;
  if (!first_) {
    for (const auto& [id, seen] : now) {
      const auto before = seen_.find(id);
      if (before == seen_.end()) {
        events.push_back(ServiceEvent{"create", id, {{"name", seen.name}}});
        continue;
      }
      if (before->second.version == seen.version) continue;
      ServiceEvent update{"update", id, {{"name", seen.name}}};
      if (before->second.replicas != seen.replicas) {
        update.attributes["replicas.old"] = std::to_string(before->second.replicas);
        update.attributes["replicas.new"] = std::to_string(seen.replicas);
      }
      events.push_back(std::move(update));
    }
    for (const auto& [id, seen] : seen_) {
      if (!now.contains(id)) events.push_back(ServiceEvent{"remove", id, {{"name", seen.name}}});
    }
  }
  first_ = false;
  seen_ = std::move(now);
  return events;
}

}  // namespace weft::control::api
