// Durable storage of the agent's state: a crash or power loss at any moment
// leaves either the old or the new file, never a torn mix of both.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weft::control::network {

// Atomically replaces `path` with `content`: write to a temp file in the same
// dir, fsync it, rename over, fsync the dir. Creates parent dirs (mode 0700).
// Throws std::system_error with the path in the message on failure, leaving
// no temp file behind.
void write_file_atomically(const std::filesystem::path& path, std::string_view content);
// The same with the content written piece by piece as `produce` hands it to
// `write` (a large file is not built whole in memory first).
using ContentWriter = std::function<void(std::string_view piece)>;
void write_file_atomically_in_pieces(const std::filesystem::path& path,
                                     const std::function<void(const ContentWriter& write)>& produce);

// Like write_file_atomically without the two fsyncs: readers see the old or
// the new content, also after the process is killed (the page cache outlives
// it), but a crash of the machine may lose the change. For records that only
// have to outlive what they describe: intents about kernel objects, which a
// reboot wipes too. Much cheaper (no waiting for the disk).
void replace_file_unsynced(const std::filesystem::path& path, std::string_view content);

// Removes the temp files that write_file_atomically(dir / NAME, ...) leaves
// when the process dies between creating and renaming one (".NAME.tmp.XXXXXX",
// for any NAME), directly in `dir`. Call it only while nothing writes there
// (the agent holds the state dir lock and has not started its writers).
// Returns the names removed; a missing dir is not an error; throws
// std::system_error when a temp file cannot be removed.
std::vector<std::string> remove_leftover_temp_files(const std::filesystem::path& dir);

// Makes what was created, renamed or unlinked in `dir` durable (fsync of the
// directory); without it a rename may not survive a crash of the machine.
// Throws std::system_error naming `dir`.
void sync_directory(const std::filesystem::path& dir);

// Reads the whole file; std::nullopt if it does not exist; throws
// std::system_error on other errors.
std::optional<std::string> read_file(const std::filesystem::path& path);

}  // namespace weft::control::network
