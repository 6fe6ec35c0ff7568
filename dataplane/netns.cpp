#include "dataplane/netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include <cerrno>
#include <system_error>
#include <thread>

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

namespace weft::dataplane {
namespace {

std::system_error errno_error(int err, const std::string& what) {
  return std::system_error(err, std::generic_category(), what);
}

bool is_nsfs(int fd) {
  struct statfs fs {};
  return ::fstatfs(fd, &fs) == 0 && static_cast<unsigned long>(fs.f_type) == NSFS_MAGIC;
}

}  // namespace

std::filesystem::path netns_path_of(const std::string& name_or_path) {
  if (name_or_path.find('/') != std::string::npos) return name_or_path;
  return std::filesystem::path("/run/netns") / name_or_path;
}

NetnsHandle::NetnsHandle(UniqueFd fd, std::string description) : fd_(std::move(fd)) {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) throw errno_error(errno, "stat namespace " + description);
  device_ = st.st_dev;
  inode_ = st.st_ino;
}

NetnsHandle NetnsHandle::open(const std::string& name_or_path) {
  if (name_or_path.empty()) throw errno_error(EINVAL, "namespace name is empty");
  auto path = netns_path_of(name_or_path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw errno_error(errno, "namespace \"" + name_or_path + "\" (" + path.string() + ")");
  if (!is_nsfs(fd.get()))
    throw errno_error(EINVAL, "\"" + path.string() + "\" is not a network namespace");
  // A mount or pid namespace file is nsfs too; setns() would fail later with
  // a vaguer message.
  if (::ioctl(fd.get(), NS_GET_NSTYPE) != CLONE_NEWNET)
    throw errno_error(EINVAL, "\"" + path.string() + "\" is not a network namespace");
  return NetnsHandle(std::move(fd), path.string());
}

NetnsHandle NetnsHandle::current() {
  UniqueFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!fd) throw errno_error(errno, "open /proc/thread-self/ns/net");
  return NetnsHandle(std::move(fd), "current");
}

NetnsGuard::NetnsGuard(const NetnsHandle& target)
    : original_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
  if (!original_) throw errno_error(errno, "open /proc/thread-self/ns/net");
  if (::setns(target.fd(), CLONE_NEWNET) != 0) throw errno_error(errno, "setns");
}

NetnsGuard::~NetnsGuard() {
  // Failing to return would leave this thread in a foreign namespace and
  // every later netlink call would act on the wrong kernel objects.
  if (::setns(original_.get(), CLONE_NEWNET) != 0) std::terminate();
}

UniqueFd open_socket_in(const NetnsHandle& ns, int domain, int type, int protocol) {
  NetnsGuard guard(ns);
  UniqueFd fd(::socket(domain, type | SOCK_CLOEXEC, protocol));
  if (!fd) throw errno_error(errno, "socket in namespace");
  return fd;
}

bool is_pinned_netns(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  return fd && is_nsfs(fd.get());
}

void create_pinned_netns(const std::filesystem::path& path) {
  if (is_pinned_netns(path)) throw errno_error(EEXIST, "namespace " + path.string());
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) throw std::system_error(ec, "create " + path.parent_path().string());
  {
    UniqueFd placeholder(::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0444));
    if (!placeholder) throw errno_error(errno, "create " + path.string());
  }
  // unshare() changes only the calling thread's namespace; doing it on a
  // thread of its own keeps every other thread where it was.
  int result = 0;
  std::thread worker([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      result = errno;
      return;
    }
    auto self = "/proc/self/task/" + std::to_string(::syscall(SYS_gettid)) + "/ns/net";
    if (::mount(self.c_str(), path.c_str(), "none", MS_BIND, nullptr) != 0) result = errno;
  });
  worker.join();
  if (result != 0) {
    ::unlink(path.c_str());
    throw errno_error(result, "pin namespace at " + path.string());
  }
}

void remove_pinned_netns(const std::filesystem::path& path) {
  while (::umount2(path.c_str(), MNT_DETACH) == 0) {
    // A path may have been mounted more than once after a crash mid-create.
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    throw errno_error(errno, "remove " + path.string());
}

}  // namespace weft::dataplane
