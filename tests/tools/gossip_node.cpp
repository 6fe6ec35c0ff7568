// weft-gossip-node: runs one weft gossip node (memberlist + serf
// compatibility) until SIGTERM/SIGINT, for integration tests against serf.
//
//   weft-gossip-node --name N --bind 127.0.0.1:7946 [--join IP:PORT]...
//                    [--key BASE64]... [--tag k=v]... [--members-file PATH]
//                    [--no-leave] [--log-level debug|info|warn]
//
// Membership is written as JSON to --members-file every second (atomically,
// via rename) and printed to stdout on SIGUSR1. SIGTERM/SIGINT leave the
// cluster gracefully (serf shows the node as "left") unless --no-leave.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "control/gossip/host_port.h"
#include "control/gossip/memberlist.h"
#include "control/gossip/serf_compat.h"

namespace gossip = weft::control::gossip;
namespace asio = boost::asio;

namespace {

struct Options {
  std::string name;
  std::string bind = "127.0.0.1:7946";
  std::vector<std::string> join;
  std::vector<std::string> keys;
  gossip::Tags tags{{"role", "weft"}};
  std::string members_file;
  bool leave_on_signal = true;
  std::string log_level = "info";
};

[[noreturn]] void usage_error(const std::string& error) {
  std::cerr << "weft-gossip-node: " << error << "\n";
  std::exit(2);
}

// Exits (status 2, or 0 for --help) on bad arguments.
Options parse(int argc, char** argv) {
  Options o;
  std::vector<std::string> tags;
  bool no_leave = false;
  CLI::App app{"weft-gossip-node: one weft gossip instance, for interop tests", "weft-gossip-node"};
  app.add_option("--name", o.name, "Node name")->required();
  app.add_option("--bind", o.bind, "IP:PORT")->capture_default_str();
  app.add_option("--join", o.join, "IP:PORT to join (repeatable)");
  app.add_option("--key", o.keys, "Gossip key, base64 (repeatable: a keyring)");
  app.add_option("--tag", tags, "k=v serf tag (repeatable)")->check([](const std::string& kv) {
    return kv.find('=') == std::string::npos ? std::string("--tag needs k=v") : std::string();
  });
  app.add_option("--members-file", o.members_file, "Write the member list here as JSON");
  app.add_flag("--no-leave", no_leave, "Do not leave gracefully on a signal");
  app.add_option("--log-level", o.log_level, "spdlog level")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::Error& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);
  }
  for (const auto& kv : tags) {
    const auto eq = kv.find('=');
    o.tags[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  o.leave_on_signal = !no_leave;
  return o;
}

nlohmann::json members_json(const gossip::Memberlist& ml) {
  nlohmann::json members = nlohmann::json::array();
  for (const auto& m : ml.members()) {
    nlohmann::json tags = nlohmann::json::object();
    try {
      for (const auto& [k, v] : gossip::decode_serf_tags(m.meta)) tags[k] = v;
    } catch (const std::exception&) {
    }
    members.push_back({{"name", m.name},
                       {"addr", m.addr.to_string()},
                       {"port", m.port},
                       {"state", gossip::node_state_name(m.state)},
                       {"incarnation", m.incarnation},
                       {"tags", tags}});
  }
  return {{"node", ml.config().name}, {"members", members}};
}

void write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text << "\n";
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  spdlog::set_level(spdlog::level::from_str(opt.log_level));

  gossip::Config cfg;
  cfg.name = opt.name;
  try {
    const auto bind = gossip::parse_host_port(opt.bind);
    if (!bind.port) usage_error("--bind needs IP:PORT");
    cfg.bind_addr = bind.ip.to_string();
    cfg.bind_port = *bind.port;
  } catch (const gossip::InvalidHostPort& e) {
    usage_error("--bind needs IP:PORT: " + std::string(e.what()));
  }
  try {
    if (!opt.keys.empty()) {
      cfg.keyring = std::make_shared<gossip::Keyring>(gossip::Keyring::decode_base64_key(opt.keys.front()));
      for (std::size_t i = 1; i < opt.keys.size(); ++i) {
        cfg.keyring->add_key(gossip::Keyring::decode_base64_key(opt.keys[i]));
      }
    }
  } catch (const std::exception& e) {
    usage_error(e.what());
  }

  asio::io_context io;
  gossip::SerfCompat serf(io, opt.name, opt.tags);
  gossip::Memberlist ml(io, cfg, &serf, &serf);
  serf.attach(&ml);
  try {
    ml.start();
  } catch (const std::exception& e) {
    std::cerr << "weft-gossip-node: " << e.what() << "\n";
    return 1;
  }

  // Join, retrying for a while like `serf agent -retry-join`.
  auto join_timer = std::make_shared<asio::steady_timer>(io);
  auto attempts = std::make_shared<int>(0);
  std::function<void()> try_join = [&] {
    if (opt.join.empty()) return;
    ml.join(opt.join, [&, join_timer, attempts](int ok, std::string err) {
      if (ok > 0) {
        spdlog::info("joined cluster via {} peer(s)", ok);
        serf.broadcast_join();
        return;
      }
      spdlog::warn("join failed: {}", err);
      if (++*attempts >= 30) return;
      join_timer->expires_after(std::chrono::seconds(1));
      join_timer->async_wait([&](const boost::system::error_code& ec) {
        if (!ec) try_join();
      });
    });
  };
  try_join();

  asio::steady_timer dump_timer(io);
  std::function<void()> dump = [&] {
    if (!opt.members_file.empty()) {
      try {
        write_atomically(opt.members_file, members_json(ml).dump());
      } catch (const std::exception& e) {
        spdlog::warn("cannot write {}: {}", opt.members_file, e.what());
      }
    }
    dump_timer.expires_after(std::chrono::seconds(1));
    dump_timer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) dump();
    });
  };
  dump();

  asio::signal_set usr1(io, SIGUSR1);
  std::function<void()> wait_usr1 = [&] {
    usr1.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      std::cout << members_json(ml).dump() << std::endl;
      wait_usr1();
    });
  };
  wait_usr1();

  asio::signal_set stop(io, SIGTERM, SIGINT);
  stop.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    auto finish = [&] {
      ml.shutdown();
      join_timer->cancel();
      dump_timer.cancel();
      usr1.cancel();
      io.stop();
    };
    if (!opt.leave_on_signal) {
      spdlog::info("signal {}: shutting down without leaving", sig);
      finish();
      return;
    }
    spdlog::info("signal {}: leaving the cluster", sig);
    serf.leave(std::chrono::seconds(5), std::chrono::seconds(1), [&, finish](bool ok) {
      spdlog::info("left the cluster ({})", ok ? "broadcast done" : "timed out");
      if (!opt.members_file.empty()) {
        try {
          write_atomically(opt.members_file, members_json(ml).dump());
        } catch (const std::exception&) {
        }
      }
      finish();
    });
  });

  io.run();
  return 0;
}
