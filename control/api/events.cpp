#include "control/api/events.h"

#include <algorithm>

#include "control/api/filters.h"
#include "control/model/model.h"

namespace weft::control::api {

using nlohmann::json;

namespace {

[[noreturn]] void bad_request(const std::string& message) { throw ApiError(ApiError::Kind::BadRequest, message); }

// dockerd's timestamps: seconds since the epoch with an optional fraction
// ("1700000000.000000001"); the CLI turns "10m" and dates into these.
std::int64_t parse_timestamp(const std::string& name, const std::string& text) {
  const auto dot = text.find('.');
  const std::string seconds = text.substr(0, dot);
  std::string fraction = dot == std::string::npos ? "" : text.substr(dot + 1);
  auto all_digits = [](const std::string& s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (seconds.empty() || seconds.size() > 12 || !all_digits(seconds) || fraction.size() > 9 || !all_digits(fraction))
    bad_request("invalid value for " + name + ": " + text.substr(0, 64) + " (seconds since the epoch expected)");
  fraction.resize(9, '0');
  // Nanoseconds fit an int64 until 2262; later is "never" to a stream.
  constexpr std::int64_t kLatestSeconds = 9'000'000'000;
  const std::int64_t whole = std::min<std::int64_t>(std::stoll(seconds), kLatestSeconds);
  return whole * 1'000'000'000 + std::stoll(fraction);
}

const std::set<std::string> kFilterKeys = {"type", "event", "network", "node", "service", "scope"};

bool attribute_is(const DockerEvent& event, const char* name, const std::set<std::string>& values) {
  auto it = event.attributes.find(name);
  return it != event.attributes.end() && values.count(it->second);
}

}  // namespace

std::int64_t now_nano() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json event_json(const DockerEvent& e) {
  json attributes = json::object();
  for (const auto& [key, value] : e.attributes) attributes[key] = value;
  return {{"Type", e.type},
          {"Action", e.action},
          {"Actor", {{"ID", e.actor_id}, {"Attributes", attributes}}},
          {"scope", e.scope},
          {"time", e.time_nano / 1'000'000'000},
          {"timeNano", e.time_nano}};
}

bool EventQuery::matches(const DockerEvent& e) const {
  for (const auto& [key, values] : filters) {
    if (values.empty()) continue;
    bool ok = false;
    if (key == "type") ok = values.count(e.type) > 0;
    else if (key == "event") ok = values.count(e.action) > 0;
    else if (key == "scope") ok = values.count(e.scope) > 0;
    else if (key == "network" || key == "node" || key == "service")
      ok = e.type == key && (values.count(e.actor_id) > 0 || attribute_is(e, "name", values));
    if (!ok) return false;
  }
  return true;
}

EventQuery parse_event_query(std::string_view query) {
  EventQuery result;
  if (auto since = query_parameter(query, "since"); since && !since->empty())
    result.since_nano = parse_timestamp("since", *since);
  if (auto until = query_parameter(query, "until"); until && !until->empty())
    result.until_nano = parse_timestamp("until", *until);
  if (auto filters = query_parameter(query, "filters", kMaxFiltersLength); filters && !filters->empty())
    result.filters = parse_filters(*filters, kFilterKeys);
  return result;
}

void EventBus::publish(DockerEvent event) {
  std::lock_guard lock(mutex_);
  if (event.time_nano == 0) event.time_nano = now_nano();
  // Strictly increasing, so `since` a seen event's time never repeats it.
  event.time_nano = std::max(event.time_nano, last_time_ + 1);
  last_time_ = event.time_nano;
  history_.push_back(event);
  while (history_.size() > history_limit_) history_.pop_front();
  for (const auto& [id, subscriber] : subscribers_) subscriber(history_.back());
}

std::uint64_t EventBus::subscribe(Subscriber subscriber, std::optional<std::int64_t> since_nano,
                                  std::vector<DockerEvent>& backlog) {
  std::lock_guard lock(mutex_);
  if (since_nano) {
    for (const auto& event : history_)
      if (event.time_nano >= *since_nano) backlog.push_back(event);
  }
  const auto id = next_id_++;
  subscribers_.emplace(id, std::move(subscriber));
  return id;
}

void EventBus::unsubscribe(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  subscribers_.erase(id);
}

std::size_t EventBus::subscribers() const {
  std::lock_guard lock(mutex_);
  return subscribers_.size();
}

}  // namespace weft::control::api
