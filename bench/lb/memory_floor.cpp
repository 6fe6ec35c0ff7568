#include "bench/lb/memory_floor.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/lb/bpf_error.h"

namespace weft::bench::lb {
namespace {

namespace dlb = weft::dataplane::lb;
using weft::dataplane::UniqueFd;

constexpr std::size_t kLine = 64;
// ~2.5 MB between two independent runs' lines at the first try: no
// prefetcher follows it across pages.
constexpr std::size_t kStride = 40503;
constexpr std::int16_t kStateKey = -4;  // the u32 key 0, on the stack
constexpr std::int16_t kLineKey = -8;   // the line's index, on the stack

bpf_insn insn(std::uint8_t code, std::uint8_t dst, std::uint8_t src, std::int16_t off,
              std::int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

// A program of instructions whose lookups may jump to its one `out`.
class Program {
 public:
  void add(bpf_insn i) { insns_.push_back(i); }

  // r0 = lookup(map, the u32 key at r10 + key_off), to `out` when none.
  void lookup(int map_fd, std::int16_t key_off) {
    add(insn(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map_fd));
    add(insn(0, 0, 0, 0, 0));
    add(insn(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0));
    add(insn(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, key_off));
    add(insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem));
    add(insn(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 0, 0));
    to_out_.push_back(insns_.size() - 1);
  }

  // `out` (r0 = TC_ACT_OK; exit) appended, and the program loaded.
  UniqueFd load(const char* name) {
    const std::size_t out = insns_.size();
    add(insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, TC_ACT_OK));
    add(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    for (std::size_t jump : to_out_) insns_[jump].off = static_cast<std::int16_t>(out - jump - 1);
    UniqueFd fd(bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, name, "GPL", insns_.data(), insns_.size(),
                              nullptr));
    if (!fd) throw dlb::BpfError(errno, std::string("load the program ") + name);
    return fd;
  }

 private:
  std::vector<bpf_insn> insns_;
  std::vector<std::size_t> to_out_;
};

UniqueFd array_map(const char* name, std::uint32_t value_size, std::uint32_t entries,
                   std::uint32_t flags) {
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
  UniqueFd fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, name, sizeof(std::uint32_t), value_size,
                             entries, &opts));
  if (!fd) throw dlb::BpfError(errno, std::string("create map ") + name);
  return fd;
}

// The r0 = *line & 0 that ends the independent program: the read must
// complete, its value decides nothing.
void read_line_and_exit(Program& p) {
  p.add(insn(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_0, BPF_REG_0, 0, 0));
  p.add(insn(BPF_ALU64 | BPF_AND | BPF_K, BPF_REG_0, 0, 0, 0));
  p.add(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
}

}  // namespace

MemoryFloor::MemoryFloor(std::size_t bytes)
    : lines_(std::max<std::size_t>(1, bytes / kLine)), stride_(kStride) {
  while (std::gcd(stride_, lines_) != 1) ++stride_;
  state_ = array_map("floor_state", sizeof(std::uint64_t), 1, 0);
  table_ = array_map("floor_table", kLine, static_cast<std::uint32_t>(lines_), BPF_F_MMAPABLE);

  // Each line's first word: the next line of one random cycle through all.
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t mapped = (lines_ * kLine + page - 1) / page * page;
  void* mem = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, table_.get(), 0);
  if (mem == MAP_FAILED) throw dlb::BpfError(errno, "mmap floor_table");
  std::vector<std::uint32_t> order(lines_);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  auto* base = static_cast<std::uint8_t*>(mem);
  for (std::size_t i = 0; i < lines_; ++i) {
    const std::uint64_t next = order[(i + 1) % lines_];
    std::copy_n(reinterpret_cast<const std::uint8_t*>(&next), sizeof next,
                base + std::size_t{order[i]} * kLine);
  }
  munmap(mem, mapped);

  // Chained: line = state; state = table[line] (the read itself).
  Program chained;
  chained.add(insn(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, kStateKey, 0));
  chained.lookup(state_.get(), kStateKey);
  chained.add(insn(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_0, 0, 0));
  chained.add(insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_1, BPF_REG_0, 0, 0));
  chained.add(insn(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_1, kLineKey, 0));
  chained.lookup(table_.get(), kLineKey);
  chained.add(insn(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_1, BPF_REG_0, 0, 0));
  chained.add(insn(BPF_STX | BPF_MEM | BPF_DW, BPF_REG_6, BPF_REG_1, 0, 0));
  chained.add(insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, TC_ACT_OK));
  chained.add(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  chained_ = chained.load("floor_chained");

  // Independent: n = state++; line = n * stride % lines.
  Program independent;
  independent.add(insn(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, kStateKey, 0));
  independent.lookup(state_.get(), kStateKey);
  independent.add(insn(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_1, BPF_REG_0, 0, 0));
  independent.add(insn(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_1, 0, 0));
  independent.add(insn(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, 1));
  independent.add(insn(BPF_STX | BPF_MEM | BPF_DW, BPF_REG_0, BPF_REG_2, 0, 0));
  independent.add(insn(BPF_ALU64 | BPF_MUL | BPF_K, BPF_REG_1, 0, 0, static_cast<std::int32_t>(stride_)));
  independent.add(insn(BPF_ALU64 | BPF_MOD | BPF_K, BPF_REG_1, 0, 0, static_cast<std::int32_t>(lines_)));
  independent.add(insn(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_1, kLineKey, 0));
  independent.lookup(table_.get(), kLineKey);
  read_line_and_exit(independent);
  independent_ = independent.load("floor_indep");
}

double MemoryFloor::pass(int program) {
  std::vector<std::uint8_t> packet(64, 0);  // never read: any packet will do
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  opts.data_in = packet.data();
  opts.data_size_in = static_cast<std::uint32_t>(packet.size());
  opts.repeat = static_cast<int>(lines_);
  if (bpf_prog_test_run_opts(program, &opts) != 0) {
    throw dlb::BpfError(errno, "BPF_PROG_TEST_RUN (memory floor)");
  }
  if (opts.retval != TC_ACT_OK) throw std::runtime_error("memory floor: unexpected verdict");
  return static_cast<double>(opts.duration);
}

std::uint64_t MemoryFloor::state() const {
  std::uint32_t key = 0;
  std::uint64_t value = 0;
  if (bpf_map_lookup_elem(state_.get(), &key, &value) != 0) throw dlb::BpfError(errno, "read floor_state");
  return value;
}

void MemoryFloor::set_state(std::uint64_t value) {
  std::uint32_t key = 0;
  if (bpf_map_update_elem(state_.get(), &key, &value, BPF_ANY) != 0) {
    throw dlb::BpfError(errno, "write floor_state");
  }
}

MemoryFloor::Ns MemoryFloor::measure() {
  // Each pass checked by where it leaves the state: a chained run whose
  // lookup failed would break the cycle, and an independent run's line is
  // in range by construction (n * stride % lines), its count checked.
  Ns ns;
  set_state(0);
  pass(independent_.get());  // every line once: every page touched
  ns.independent = pass(independent_.get());
  if (state() != 2 * lines_) throw std::runtime_error("memory floor: independent runs missed");
  set_state(0);
  pass(chained_.get());
  ns.chained = pass(chained_.get());
  if (state() != 0) throw std::runtime_error("memory floor: the chain did not come round");
  return ns;
}

}  // namespace weft::bench::lb
