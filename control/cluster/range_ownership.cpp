#include "control/cluster/range_ownership.h"
#include "control/network/network_manager.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

namespace weft::control::cluster {
namespace {

using nlohmann::json;

// Zero-padded so a space's keys sort by number.
std::string key_of(const std::string& space, std::uint32_t first) { return fmt::format("{}|{:010}", space, first); }

std::optional<HeldRange> parse(const tables::TableEntry& e) {
  try {
    auto j = json::parse(e.value);
    return HeldRange{j.at("space").get<std::string>(),
                     network::ipam::Range{network::ipam::Ipv4{j.at("first").get<std::uint32_t>()},
                                 network::ipam::Ipv4{j.at("last").get<std::uint32_t>()}},
                     j.at("holder").get<std::string>()};
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::uint64_t align_up(std::uint64_t v, std::uint64_t unit) { return (v + unit - 1) / unit * unit; }

}  // namespace

std::vector<HeldRange> RangeOwnership::ranges(const std::string& space) const {
  std::vector<HeldRange> result;
  for (const auto& e : tables_.entries(kRangesTable)) {
    if (!e.key.starts_with(space + "|")) continue;
    if (auto r = parse(e); r && r->space == space) result.push_back(*r);
  }
  return result;
}

bool RangeOwnership::known(const std::string& space) const { return !ranges(space).empty(); }

network::ipam::RangeSet RangeOwnership::held_by(const std::string& space, const std::string& node) const {
  network::ipam::RangeSet set;
  for (const auto& r : ranges(space))
    if (r.holder == node) set.add(r.range);
  return set;
}

std::optional<std::string> RangeOwnership::richest_holder(
    const std::string& space, const std::function<bool(const std::string&)>& eligible) const {
  std::map<std::string, std::uint64_t> sizes;
  for (const auto& r : ranges(space))
    if (eligible(r.holder)) sizes[r.holder] += r.range.size();
  std::optional<std::string> best;
  std::uint64_t best_size = 0;
  for (const auto& [node, size] : sizes)
    if (size > best_size) best = node, best_size = size;
  return best;
}

tables::TableEntry RangeOwnership::entry(const std::string& space, const network::ipam::Range& range,
                                          const std::string& holder, std::uint64_t lamport) const {
  json value = {{"space", space}, {"first", range.first.value}, {"last", range.last.value}, {"holder", holder}};
  return tables::TableEntry{.table = kRangesTable,
                            .key = key_of(space, range.first.value),
                            .owner = tables_.local_node(),
                            .lamport = lamport,
                            .deleted = false,
                            .value = value.dump()};
}

std::vector<tables::TableEntry> RangeOwnership::commit(std::vector<tables::TableEntry> planned) {
  if (planned.empty()) return planned;
  if (persist_) {
    auto after = tables_.table_snapshot(kRangesTable);
    for (const auto& e : planned) {
      auto same_key = std::find_if(after.begin(), after.end(), [&](const auto& a) { return a.key == e.key; });
      if (same_key != after.end())
        *same_key = e;
      else
        after.push_back(e);
    }
    persist_(after);  // throws: nothing changed
  }
  // Local writes with the times put() would have given them: each is newer
  // than anything here, so apply() takes it.
  for (const auto& e : planned) tables_.apply(e);
  // The file now holds the whole table, peers' unsaved entries included.
  if (persist_) unsaved_ = false;
  return planned;
}

std::vector<tables::TableEntry> RangeOwnership::claim(const std::string& space, const network::ipam::Range& whole) {
  if (known(space)) return {};
  return commit({entry(space, whole, tables_.local_node(), tables_.clock() + 1)});
}

std::vector<tables::TableEntry> RangeOwnership::donate(const std::string& space, const std::string& to,
                                                       const network::ipam::RangeSet& free_here, std::uint32_t unit,
                                                       std::uint64_t max_units) {
  const std::uint64_t u = unit == 0 ? 1 : unit;
  // The largest stretch of whole aligned units that this node holds and has
  // not handed out.
  std::optional<network::ipam::Range> stretch;
  std::uint64_t stretch_units = 0;
  const auto held = held_locally(space);
  for (const auto& r : free_here.ranges()) {
    if (!held.contains(r)) continue;
    const std::uint64_t first = align_up(r.first.value, u);
    const std::uint64_t end = (std::uint64_t{r.last.value} + 1) / u * u;  // exclusive, aligned down
    if (end <= first) continue;
    const std::uint64_t units = (end - first) / u;
    if (units > stretch_units)
      stretch = network::ipam::Range{network::ipam::Ipv4{static_cast<std::uint32_t>(first)}, network::ipam::Ipv4{static_cast<std::uint32_t>(end - 1)}},
      stretch_units = units;
  }
  if (!stretch || stretch_units < 2) return {};
  const std::uint64_t give_units = std::min(max_units, stretch_units / 2);
  network::ipam::Range gift;
  if (space.starts_with(network::kNetworkSpacePrefix)) {
    // A network's addresses: the top of the stretch goes, so the network's
    // creator keeps its low addresses and hands them out first (the first
    // service on a fresh /24 gets .2, as in Docker), however early a peer asks.
    const std::uint64_t give_first = std::uint64_t{stretch->last.value} + 1 - give_units * u;
    gift = {network::ipam::Ipv4{static_cast<std::uint32_t>(give_first)}, stretch->last};
  } else {
    const std::uint64_t give_last = std::uint64_t{stretch->first.value} + give_units * u - 1;
    gift = {stretch->first, network::ipam::Ipv4{static_cast<std::uint32_t>(give_last)}};
  }

  // Re-cut the held range that contains the gift into up to three entries.
  for (const auto& r : ranges(space)) {
    if (r.holder != tables_.local_node() || r.range.first > gift.first || r.range.last < gift.last) continue;
    std::vector<tables::TableEntry> out;
    auto lamport = tables_.clock();
    if (r.range.first < gift.first)
      out.push_back(entry(space, {r.range.first, network::ipam::Ipv4{gift.first.value - 1}}, tables_.local_node(), ++lamport));
    out.push_back(entry(space, gift, to, ++lamport));
    if (gift.last < r.range.last)
      out.push_back(entry(space, {network::ipam::Ipv4{gift.last.value + 1}, r.range.last}, tables_.local_node(), ++lamport));
    return commit(std::move(out));
  }
  return {};
}

std::vector<tables::TableEntry> RangeOwnership::take_over(const std::string& gone_node) {
  std::vector<tables::TableEntry> out;
  auto lamport = tables_.clock();
  for (const auto& e : tables_.entries(kRangesTable)) {
    auto r = parse(e);
    if (r && r->holder == gone_node) out.push_back(entry(r->space, r->range, tables_.local_node(), ++lamport));
  }
  return commit(std::move(out));
}

bool RangeOwnership::is_mine(const std::optional<tables::TableEntry>& e) const {
  if (!e || e->table != kRangesTable) return false;
  auto r = parse(*e);
  return r && r->holder == tables_.local_node();
}

void RangeOwnership::observe(const std::optional<tables::TableEntry>& before,
                             const std::optional<tables::TableEntry>& now) {
  if (is_mine(before) || is_mine(now)) unsaved_ = true;
}

network::ipam::RangeSet RangeOwnership::usable(const std::string& space) {
  if (unsaved_ && persist_) {
    persist_(tables_.table_snapshot(kRangesTable));
    unsaved_ = false;
  }
  return held_locally(space);
}

}  // namespace weft::control::cluster
