// `weft top [--once]`
#include "tools/cli_top.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "tools/cli.h"
#include "tools/cli_table.h"

namespace weft::tools {

namespace {

using observe::ClusterSnapshot;

// The node's tasks as one cell, cut so a column of hundreds stays a line.
std::string task_list(const ClusterSnapshot& state, const std::string& node) {
  std::string cell;
  std::size_t shown = 0, total = 0;
  for (const auto& task : state.tasks) {
    if (task.node != node) continue;
    ++total;
    const std::string item = task.id + (task.state == "running" ? "" : "(" + task.state + ")");
    if (cell.size() + item.size() > 60) continue;
    cell += (cell.empty() ? "" : " ") + item;
    ++shown;
  }
  if (shown < total) cell += fmt::format(" +{}", total - shown);
  return cell;
}

std::string join(const std::vector<std::string>& items, const char* separator = ",") {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : separator) + item;
  return text;
}

}  // namespace

std::string render_top(const ClusterSnapshot& now, const ClusterSnapshot* before, double seconds) {
  std::ostringstream out;
  std::size_t ready = 0, running = 0;
  for (const auto& node : now.nodes) ready += node.state == "Ready";
  for (const auto& task : now.tasks) running += task.state == "running";
  out << fmt::format("weft top: seen from {} (weft {}): {}/{} nodes ready, {}/{} tasks running, {} services\n\n",
                     now.node, now.version, ready, now.nodes.size(), running, now.tasks.size(), now.services.size());

  Table nodes({"NODE", "ADDRESS", "STATE", "TASKS", "RUNNING"});
  for (const auto& node : now.nodes) {
    std::size_t count = 0;
    for (const auto& task : now.tasks) count += task.node == node.name;
    nodes.add_row({node.name + (node.self ? " *" : ""), node.address, node.state, std::to_string(count),
                   task_list(now, node.name)});
  }
  nodes.print(out);
  out << '\n';

  Table services({"SERVICE", "MODE", "VIPS", "PORTS", "REPLICAS", "BACKENDS", "DNS"});
  for (const auto& service : now.services) {
    std::vector<std::string> vips;
    for (const auto& vip : service.vips) vips.push_back(vip.addr);
    std::size_t draining = 0;
    for (const auto& backend : service.backends) draining += backend.state == "draining";
    services.add_row({service.name, service.mode, vips.empty() ? "-" : join(vips), join(service.ports),
                      service.replicas == 0 ? "-" : fmt::format("{}/{}", service.running, service.replicas),
                      draining == 0 ? std::to_string(service.backends.size())
                                    : fmt::format("{} ({} draining)", service.backends.size(), draining),
                      join(service.dns_names)});
  }
  services.print(out);
  out << '\n';

  // Counters from the previous read, by service and endpoint.
  std::map<std::pair<std::string, std::string>, std::int64_t> previous;
  if (before != nullptr)
    for (const auto& service : before->services)
      for (const auto& backend : service.backends) previous[{service.name, backend.endpoint}] = backend.connections;
  Table backends({"SERVICE", "BACKEND", "IP", "NODE", "STATE", "CONNECTIONS", "CONN/S"});
  for (const auto& service : now.services)
    for (const auto& backend : service.backends) {
      std::string rate = "-";
      const auto old = previous.find({service.name, backend.endpoint});
      if (old != previous.end() && old->second >= 0 && backend.connections >= old->second && seconds > 0)
        rate = fmt::format("{:.1f}", static_cast<double>(backend.connections - old->second) / seconds);
      backends.add_row({service.name, backend.name, backend.ip, backend.node, backend.state,
                        backend.connections < 0 ? "-" : std::to_string(backend.connections), rate});
    }
  backends.print(out);
  return out.str();
}

namespace {

ClusterSnapshot read_state(Cli& cli) {
  return observe::snapshot_from_json(cli.client().call(http::verb::get, "/api/v1/state"));
}

int top(Cli& cli, bool once) {
  using Clock = std::chrono::steady_clock;
  constexpr auto kInterval = std::chrono::seconds(1);
  // Even --once reads twice, a second apart, so the rates are real.
  std::optional<ClusterSnapshot> before;
  auto before_time = Clock::now();
  const bool terminal = ::isatty(STDOUT_FILENO) != 0;
  for (;;) {
    ClusterSnapshot now = read_state(cli);
    const auto now_time = Clock::now();
    if (before || !once) {
      const double seconds = std::chrono::duration<double>(now_time - before_time).count();
      if (terminal && !once) std::cout << "\x1b[H\x1b[2J";  // home, clear
      std::cout << render_top(now, before ? &*before : nullptr, seconds) << std::flush;
      if (once) return 0;
      if (!terminal) std::cout << '\n';
    }
    before = std::move(now);
    before_time = now_time;
    std::this_thread::sleep_for(kInterval);
  }
}

}  // namespace

void add_top_command(CLI::App& app, Cli& cli) {
  auto* command = app.add_subcommand("top", "Show the cluster's nodes, services and backends, refreshed every second");
  auto once = std::make_shared<bool>(false);
  command->add_flag("--once", *once, "Print one screen (two reads a second apart, for the rates) and exit");
  on_run(command, cli, [&cli, once] { return top(cli, *once); });
}

}  // namespace weft::tools
