#include "control/api/events.h"

#include <algorithm>

#include "control/model/model.h"

namespace weft::control::api {

using nlohmann::json;

namespace {

[[noreturn]] void bad_request(const std::string& message) { throw ApiError(ApiError::Kind::BadRequest, message); }

constexpr std::size_t kMaxFilterValues = 64;
constexpr std::size_t kMaxFilterText = 256;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded: '+' is a space, %XX a byte.
std::string form_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && hex_digit(text[i + 1]) >= 0 && hex_digit(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

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
  return std::stoll(seconds) * 1'000'000'000 + std::stoll(fraction);
}

const std::set<std::string> kFilterKeys = {"type", "event", "network", "node", "service", "scope"};

void add_filter_value(EventQuery& query, const std::string& key, const json& value) {
  if (!value.is_string()) bad_request("filters: values of " + key + " must be strings");
  auto& values = query.filters[key];
  if (values.size() >= kMaxFilterValues) bad_request("filters: too many values for " + key);
  const auto text = value.get<std::string>();
  if (text.size() > kMaxFilterText) bad_request("filters: a value of " + key + " is too long");
  values.insert(text);
}

void parse_filters(EventQuery& query, const std::string& text) {
  const json filters = json::parse(text, nullptr, false);
  if (filters.is_discarded() || !filters.is_object()) bad_request("filters must be a JSON object");
  for (const auto& [key, values] : filters.items()) {
    if (!kFilterKeys.count(key)) bad_request("invalid filter '" + key.substr(0, 64) + "'");
    // {"type": {"network": true}} (Docker's clients) or {"type": ["network"]}.
    if (values.is_object()) {
      for (const auto& [value, enabled] : values.items())
        if (enabled.is_boolean() && enabled.get<bool>()) add_filter_value(query, key, json(value));
    } else if (values.is_array()) {
      for (const auto& value : values) add_filter_value(query, key, value);
    } else {
      bad_request("filters: " + key + " must be an object or a list");
    }
  }
}

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
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = pair.find('=');
    const std::string key = form_decode(pair.substr(0, eq));
    const std::string value = eq == std::string_view::npos ? "" : form_decode(pair.substr(eq + 1));
    if (value.empty()) continue;
    if (key == "since") result.since_nano = parse_timestamp("since", value);
    else if (key == "until") result.until_nano = parse_timestamp("until", value);
    else if (key == "filters") parse_filters(result, value);
  }
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
