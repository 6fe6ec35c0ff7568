// The one place that says which names and strings the agent accepts from
// its API: explicit length limits and hand-written linear checks (no
// std::regex, whose recursive matcher overflowed the stack on a 30000-character
// network name), with messages that name the field and the limit and quote
// at most a short, escaped preview of what was sent.
//
// Each rule comes in two forms: `*_error` returns the reason a value is
// refused (nullopt when it is fine), `validate_*` throws that reason as
// ApiError(BadRequest) (control/model/model.h).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weft::control::names {

// --- limits --------------------------------------------------------------------

// Network names, Docker's pattern [a-zA-Z0-9][a-zA-Z0-9_.-]*. Docker sets no
// length limit; weft does, so a name is cheap everywhere it goes (state file,
// gossip, URL paths: percent-encoded it stays far below the 8 KiB header
// limit of the API server).
inline constexpr std::size_t kMaxNetworkName = 128;
// A network reference in a URL path or request: a name, a 64-character id or
// an id prefix. Nothing longer can name a network.
inline constexpr std::size_t kMaxNetworkRef = kMaxNetworkName;
// Service names, Docker's pattern as for networks; they become DNS names of
// the service's virtual IP, so one DNS label at most (as Docker swarm does).
inline constexpr std::size_t kMaxServiceName = 63;
// DNS names (endpoint names, aliases), RFC 1035: labels of 1-63 characters,
// 253 in all (the textual form without a trailing dot).
inline constexpr std::size_t kMaxDnsLabel = 63;
inline constexpr std::size_t kMaxDnsName = 253;
// `endpoint attach --alias` names per endpoint: each one costs a DNS name on
// every node, and they ride in every copy of the endpoint's record.
inline constexpr std::size_t kMaxAliases = 16;
// A namespace name under /run/netns is one file name (NAME_MAX); a path is
// bounded by PATH_MAX including its terminating NUL.
inline constexpr std::size_t kMaxNetnsName = 255;
inline constexpr std::size_t kMaxNetnsPath = 4095;
// Labels (key=value metadata), Docker-like; not modelled by the API yet.
inline constexpr std::size_t kMaxLabelKey = 255;
inline constexpr std::size_t kMaxLabelValue = 4096;
inline constexpr std::size_t kMaxLabels = 64;
// Short free-form fields: driver names, subnets, gateways, IP addresses. No
// valid value comes near this; it keeps error messages that echo them short.
inline constexpr std::size_t kMaxShortText = 64;
// Node names or ids in /nodes/{id}: a weft node id, a host name or the
// name of a plain serf agent.
inline constexpr std::size_t kMaxNodeRef = 255;
// `swarm init|join`: a join token, "host:port" addresses (a DNS name and a
// port at most) and how many of them one join may list.
inline constexpr std::size_t kMaxJoinToken = 512;
inline constexpr std::size_t kMaxAddress = kMaxDnsName + 6;
inline constexpr std::size_t kMaxRemoteAddrs = 32;

// --- rules ---------------------------------------------------------------------

// Docker's network name rule and the length limit.
std::optional<std::string> network_name_error(std::string_view name);
void validate_network_name(std::string_view name);

// A network's name, id or id prefix as a request gives it: non-empty, at most
// kMaxNetworkRef long, no control characters. Deliberately not the name
// pattern: a reference that matches nothing is "not found", not malformed.
std::optional<std::string> network_ref_error(std::string_view name_or_id);
void validate_network_ref(std::string_view name_or_id);

std::optional<std::string> service_name_error(std::string_view name);
void validate_service_name(std::string_view name);

// A DNS name: dot-separated labels of [a-zA-Z0-9_-], 1..63 each, neither
// starting nor ending with '-', at most 253 in all, no empty label (so no
// leading, trailing or double dot). '_' is allowed because Docker's container
// names allow it and its embedded DNS resolves them (my_app_1), so names
// carried over from Docker setups keep working. `field` names the value in
// the message ("endpoint name", "alias").
std::optional<std::string> dns_name_error(std::string_view field, std::string_view name);
void validate_dns_name(std::string_view field, std::string_view name);

// An endpoint's explicit name (`endpoint attach --name`): a DNS name, since
// it will be resolvable on its network.
std::optional<std::string> endpoint_name_error(std::string_view name);
void validate_endpoint_name(std::string_view name);

// An endpoint's aliases: at most kMaxAliases, each a DNS name.
std::optional<std::string> aliases_error(const std::vector<std::string>& aliases);
void validate_aliases(const std::vector<std::string>& aliases);

// `--netns`: a name under /run/netns (no '/', not "." or "..", 1..255) or an
// absolute path (1..4095); no control characters in either. A relative path
// would be resolved against the agent's working directory, which means
// nothing to a client, so it is refused.
std::optional<std::string> netns_error(std::string_view netns);
void validate_netns(std::string_view netns);

// One label: key 1..255 without control characters or '=', value 0..4096
// without control characters.
std::optional<std::string> label_error(std::string_view key, std::string_view value);
void validate_label(std::string_view key, std::string_view value);

// Any other string field: at most `max_length` bytes, no control characters.
// Empty is fine (required fields are checked where they are read).
std::optional<std::string> text_error(std::string_view field, std::string_view value, std::size_t max_length);
void validate_text(std::string_view field, std::string_view value, std::size_t max_length);

// --- helpers -------------------------------------------------------------------

// Control characters as terminals see them: C0 (U+0000-U+001F), DEL and the
// C1 range U+0080-U+009F (UTF-8 C2 80..C2 9F; 0x9B alone is a CSI). Linear,
// no allocation.
bool has_control_character(std::string_view text);

// `text` safe to print on a terminal: control characters become \n, \t, \r,
// \\xNN or \\u00NN escapes; everything else is kept as is.
std::string printable(std::string_view text);

// `value` in double quotes for an error message: escaped as printable(), cut
// to its first 40 bytes (on a UTF-8 boundary) with the full length noted, so a
// megabyte of input costs a short message.
std::string quoted_preview(std::string_view value);

}  // namespace weft::control::names
