#include "control/model/names.h"

#include <string>

#include "control/model/model.h"

namespace weft::control::names {

namespace {

constexpr std::size_t kPreviewBytes = 40;

bool is_ascii_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// Length of the control character starting at text[i], 0 if there is none.
std::size_t control_character_at(std::string_view text, std::size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  if (c < 0x20 || c == 0x7F) return 1;
  if (c == 0xC2 && i + 1 < text.size()) {
    const auto next = static_cast<unsigned char>(text[i + 1]);
    if (next >= 0x80 && next <= 0x9F) return 2;
  }
  return 0;
}

std::optional<std::string> too_long(std::string_view field, std::size_t length, std::size_t limit,
                                    std::string_view unit) {
  if (length <= limit) return std::nullopt;
  return std::string(field) + " is " + std::to_string(length) + " " + std::string(unit) + " long; the limit is " +
         std::to_string(limit);
}

std::optional<std::string> control_error(std::string_view field, std::string_view value) {
  if (!has_control_character(value)) return std::nullopt;
  return "invalid " + std::string(field) + " " + quoted_preview(value) + ": control characters are not allowed";
}

void throw_if(const std::optional<std::string>& error) {
  if (error) throw ApiError(ApiError::Kind::BadRequest, *error);
}

// Docker's [a-zA-Z0-9][a-zA-Z0-9_.-]* with a length limit.
std::optional<std::string> docker_name_error(std::string_view field, std::string_view name, std::size_t limit) {
  if (name.empty()) return std::string(field) + " is required";
  if (auto error = too_long(field, name.size(), limit, "characters")) return error;
  bool valid = is_ascii_alnum(name.front());
  for (std::size_t i = 1; valid && i < name.size(); ++i) {
    const char c = name[i];
    valid = is_ascii_alnum(c) || c == '_' || c == '.' || c == '-';
  }
  if (valid) return std::nullopt;
  return "invalid " + std::string(field) + " " + quoted_preview(name) + ": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed";
}

}  // namespace

std::optional<std::string> network_name_error(std::string_view name) {
  return docker_name_error("network name", name, kMaxNetworkName);
}
void validate_network_name(std::string_view name) { throw_if(network_name_error(name)); }

std::optional<std::string> network_ref_error(std::string_view name_or_id) {
  if (name_or_id.empty()) return "network name or id is required";
  if (auto error = too_long("network name or id", name_or_id.size(), kMaxNetworkRef, "bytes")) return error;
  return control_error("network name or id", name_or_id);
}
void validate_network_ref(std::string_view name_or_id) { throw_if(network_ref_error(name_or_id)); }

std::optional<std::string> service_name_error(std::string_view name) {
  return docker_name_error("service name", name, kMaxServiceName);
}
void validate_service_name(std::string_view name) { throw_if(service_name_error(name)); }

std::optional<std::string> dns_name_error(std::string_view field, std::string_view name) {
  if (name.empty()) return std::string(field) + " is required";
  if (auto error = too_long(field, name.size(), kMaxDnsName, "characters")) return error;
  const auto invalid = [&](const std::string& why) {
    return "invalid " + std::string(field) + " " + quoted_preview(name) + ": " + why;
  };
  std::size_t label_start = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i < name.size() && name[i] != '.') {
      const char c = name[i];
      if (!is_ascii_alnum(c) && c != '-' && c != '_') {
        return invalid("only letters, digits, '-' and '_' are allowed in a DNS label, and '.' between labels");
      }
      continue;
    }
    const std::size_t length = i - label_start;
    if (length == 0) return invalid("empty DNS label (leading, trailing or double '.')");
    if (length > kMaxDnsLabel) {
      return invalid("DNS label of " + std::to_string(length) + " characters; the limit is " +
                     std::to_string(kMaxDnsLabel));
    }
    if (name[label_start] == '-' || name[i - 1] == '-') return invalid("a DNS label cannot start or end with '-'");
    label_start = i + 1;
  }
  return std::nullopt;
}
void validate_dns_name(std::string_view field, std::string_view name) { throw_if(dns_name_error(field, name)); }

std::optional<std::string> endpoint_name_error(std::string_view name) { return dns_name_error("endpoint name", name); }
void validate_endpoint_name(std::string_view name) { throw_if(endpoint_name_error(name)); }

std::optional<std::string> aliases_error(const std::vector<std::string>& aliases) {
  if (aliases.size() > kMaxAliases)
    return "an endpoint has at most " + std::to_string(kMaxAliases) + " aliases, not " + std::to_string(aliases.size());
  for (const auto& alias : aliases)
    if (auto error = dns_name_error("alias", alias)) return error;
  return std::nullopt;
}
void validate_aliases(const std::vector<std::string>& aliases) { throw_if(aliases_error(aliases)); }

std::optional<std::string> netns_error(std::string_view netns) {
  if (netns.empty()) return "a network namespace is required (--netns NAME|PATH)";
  if (netns.front() == '/') {
    if (auto error = too_long("network namespace path", netns.size(), kMaxNetnsPath, "bytes")) return error;
    return control_error("network namespace path", netns);
  }
  if (auto error = too_long("network namespace name", netns.size(), kMaxNetnsName, "bytes")) return error;
  if (auto error = control_error("network namespace name", netns)) return error;
  if (netns.find('/') != std::string_view::npos) {
    return "invalid network namespace " + quoted_preview(netns) +
           ": give a name under /run/netns or an absolute path, not a relative path";
  }
  if (netns == "." || netns == "..") return "invalid network namespace name " + quoted_preview(netns);
  return std::nullopt;
}
void validate_netns(std::string_view netns) { throw_if(netns_error(netns)); }

std::optional<std::string> label_error(std::string_view key, std::string_view value) {
  if (key.empty()) return "label key is required";
  if (auto error = too_long("label key", key.size(), kMaxLabelKey, "bytes")) return error;
  if (auto error = control_error("label key", key)) return error;
  if (key.find('=') != std::string_view::npos) return "invalid label key " + quoted_preview(key) + ": '=' is not allowed";
  if (auto error = too_long("value of label " + quoted_preview(key), value.size(), kMaxLabelValue, "bytes")) return error;
  return control_error("value of label " + quoted_preview(key), value);
}
void validate_label(std::string_view key, std::string_view value) { throw_if(label_error(key, value)); }

std::optional<std::string> text_error(std::string_view field, std::string_view value, std::size_t max_length) {
  if (auto error = too_long(field, value.size(), max_length, "bytes")) return error;
  return control_error(field, value);
}
void validate_text(std::string_view field, std::string_view value, std::size_t max_length) {
  throw_if(text_error(field, value, max_length));
}

bool has_control_character(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (control_character_at(text, i) != 0) return true;
  }
  return false;
}

std::string printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const std::size_t length = control_character_at(text, i);
    if (length == 0) {
      out += text[i];
      continue;
    }
    const auto c = static_cast<unsigned char>(text[i + length - 1]);
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        out += length == 1 ? "\\x" : "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0x0F];
    }
    i += length - 1;
  }
  return out;
}

std::string quoted_preview(std::string_view value) {
  // Built by appending: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
  std::string out = "\"";
  if (value.size() <= kPreviewBytes) {
    out.append(printable(value)).append("\"");
    return out;
  }
  std::size_t cut = kPreviewBytes;
  // Back up over UTF-8 continuation bytes so the preview stays valid UTF-8.
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  out.append(printable(value.substr(0, cut))).append("...\" (").append(std::to_string(value.size())).append(" bytes)");
  return out;
}

}  // namespace weft::control::names
