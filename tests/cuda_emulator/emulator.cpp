#include "emulator.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "include/half_bits.h"

// Saves the callee-saved registers and the stack pointer of the running context in
// *save_sp and resumes the one saved in load_sp (x86-64 System V).
extern "C" void emulated_switch_context(void** save_sp, void* load_sp);
asm(R"(
.text
.globl emulated_switch_context
.type emulated_switch_context, @function
emulated_switch_context:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
)");

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  if (device != 0) return cudaErrorInvalidValue;
  switch (attribute) {
    case cudaDevAttrMultiProcessorCount:
      *value = 132;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor:
      *value = 9;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}

namespace emulated {
namespace {

[[noreturn]] void fail(const std::string& what);

// A failed check outside the threads (at launch, or in the scheduler).
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Waiting { kNo, kAtBlockBarrier, kAtWarpCollective };

struct Copy {
  unsigned char* shared;
  const unsigned char* global;
  bool valid;
};

// A warpgroup MMA issued by one thread, not yet carried out.
struct WarpgroupMma {
  float* d;
  uint64_t a, b;
  Operands operands;
};

// Asynchronous work of one thread, as cp.async and wgmma group it: what it issued since its
// last commit, and the groups it committed, oldest first.
template <class Work>
struct AsyncGroups {
  std::vector<Work> uncommitted;
  std::vector<std::vector<Work>> committed;

  // Carries out `work` at once, or queues it for the wait that covers its group.
  template <class CarryOut>
  void issue(const Work& work, bool at_once, CarryOut&& carry_out) {
    if (at_once) {
      carry_out(work);
    } else {
      uncommitted.push_back(work);
    }
  }
  void commit() {
    committed.push_back(std::move(uncommitted));
    uncommitted.clear();
  }
  // Carries out the oldest groups until at most `pending` remain.
  template <class CarryOut>
  void wait(int pending, CarryOut&& carry_out) {
    while (static_cast<int>(committed.size()) > pending) {
      for (const Work& work : committed.front()) carry_out(work);
      committed.erase(committed.begin());
    }
  }
  bool has_work() const {
    if (!uncommitted.empty()) return true;
    for (const auto& group : committed) {
      if (!group.empty()) return true;
    }
    return false;
  }
  void clear() {
    uncommitted.clear();
    committed.clear();
  }
};

struct Thread {
  void* stack_pointer = nullptr;
  unsigned char* stack = nullptr;
  dim3 index;
  int linear = 0;
  bool exited = false;
  Waiting waiting = Waiting::kNo;
  AsyncGroups<Copy> copies;
  AsyncGroups<WarpgroupMma> mmas;
  std::vector<size_t> unfenced_chunks;  // shared chunks its copies wrote since its last fence
};

// What a lane hands the rest of its warp in a collective.
struct LaneExchange {
  uint32_t registers[6];
  unsigned address;
};

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kGuardBytes = 4096;

// Everything the emulator keeps: the launch in progress (its threads, the running one and
// the block's shared memory), the registered buffers and the settings.
struct Emulation {
  dim3 grid, block, block_index;
  std::vector<Thread> threads;
  Thread* running = nullptr;
  void* scheduler_stack_pointer = nullptr;
  const std::function<void()>* thread_body = nullptr;
  std::vector<unsigned char> shared;
  // Per 16-byte chunk of shared memory: the thread whose cp.async wrote it last and has not
  // fenced since, or -1.
  std::vector<int> unfenced_writer;
  std::vector<LaneExchange> exchange;
  std::map<const void*, int> max_dynamic_shared;  // per kernel
  std::map<uintptr_t, size_t> buffers;            // start -> bytes
  bool buffers_known = false;
  CopiesLand copies_land = CopiesLand::kAtWait;
  std::mt19937 random{1};
  // The first failed check since configure (sticky, as a CUDA kernel fault is).
  std::string error;
  bool thread_failed = false;
} state;

void yield_to_scheduler() {
  emulated_switch_context(&state.running->stack_pointer, state.scheduler_stack_pointer);
}

// Records the failure; a thread stops for good (its block and grid are abandoned), the
// scheduler unwinds to run_grid.
void fail(const std::string& what) {
  char where[96];
  const Thread* t = state.running;
  std::snprintf(where, sizeof where, " (block %u,%u,%u thread %u,%u,%u)", state.block_index.x,
                state.block_index.y, state.block_index.z, t ? t->index.x : 0, t ? t->index.y : 0,
                t ? t->index.z : 0);
  if (state.error.empty()) state.error = what + where;
  if (t == nullptr) throw Failure(what);
  state.thread_failed = true;
  yield_to_scheduler();
  std::abort();  // an abandoned thread is never resumed
}

void thread_entry() {
  (*state.thread_body)();
  Thread& t = *state.running;
  if (t.copies.has_work()) fail("exited with cp.async copies never waited for");
  if (t.mmas.has_work()) fail("exited with warpgroup MMAs never waited for");
  t.exited = true;
  yield_to_scheduler();
  fail("an exited thread was resumed");
}

void wait_for_warp() {
  state.running->waiting = Waiting::kAtWarpCollective;
  yield_to_scheduler();
}

// By the running thread, which issued it.
void land(const Copy& copy) {
  if (copy.valid) {
    std::memcpy(copy.shared, copy.global, 16);
  } else {
    std::memset(copy.shared, 0, 16);
  }
  const size_t chunk = static_cast<size_t>(copy.shared - state.shared.data()) / 16;
  state.unfenced_writer[chunk] = state.running->linear;
  state.running->unfenced_chunks.push_back(chunk);
}

void check_inside_a_buffer(const void* data, size_t bytes) {
  const auto start = reinterpret_cast<uintptr_t>(data);
  auto next = state.buffers.upper_bound(start);
  if (next == state.buffers.begin()) fail("cp.async reads outside every buffer");
  const auto& [buffer, buffer_bytes] = *std::prev(next);
  if (start + bytes > buffer + buffer_bytes) fail("cp.async reads past the end of a buffer");
}

void check_shared(size_t offset, size_t bytes, const char* what) {
  if (offset % 16 != 0) fail(std::string(what) + ": shared address not 16-byte aligned");
  if (offset + bytes > state.shared.size()) fail(std::string(what) + ": outside shared memory");
}

void start_threads(int count) {
  for (int i = 0; i < count; ++i) {
    Thread& t = state.threads[i];
    if (t.stack == nullptr) {
      void* stack =
          mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (stack == MAP_FAILED) fail("no memory for a thread's stack");
      t.stack = static_cast<unsigned char*>(stack);
      mprotect(t.stack, kGuardBytes, PROT_NONE);  // an overflow faults instead of corrupting
    }
    const dim3& b = state.block;
    t.index = dim3(i % b.x, i / b.x % b.y, i / (b.x * b.y));
    t.linear = i;
    t.exited = false;
    t.waiting = Waiting::kNo;
    t.copies.clear();
    t.mmas.clear();
    t.unfenced_chunks.clear();
    // The first switch to the thread pops six zeroed registers and returns into
    // thread_entry with the stack aligned as after a call.
    const auto top = reinterpret_cast<uintptr_t>(t.stack + kStackBytes) & ~uintptr_t{15};
    auto* frame = reinterpret_cast<uintptr_t*>(top - 64);
    std::fill(frame, frame + 8, uintptr_t{0});
    frame[6] = reinterpret_cast<uintptr_t>(&thread_entry);
    t.stack_pointer = frame;
  }
}

// Lets every warp whose lanes all wait at a collective go on; whether one did.
bool release_warps(int count) {
  bool released = false;
  for (int warp = 0; warp < count; warp += 32) {
    const int lanes = std::min(32, count - warp);
    int waiting = 0;
    for (int lane = 0; lane < lanes; ++lane) {
      waiting += state.threads[warp + lane].waiting == Waiting::kAtWarpCollective;
    }
    if (waiting == 0) continue;
    if (waiting < lanes) {
      for (int lane = 0; lane < lanes; ++lane) {
        if (state.threads[warp + lane].exited) fail("a warp collective with lanes that exited");
      }
      continue;
    }
    for (int lane = 0; lane < lanes; ++lane) state.threads[warp + lane].waiting = Waiting::kNo;
    released = true;
  }
  return released;
}

void run_block(int count) {
  start_threads(count);
  std::vector<int> order(count);
  for (int i = 0; i < count; ++i) order[i] = i;
  int running = count;
  while (running > 0) {
    std::shuffle(order.begin(), order.end(), state.random);
    bool ran = false;
    for (int i : order) {
      Thread& t = state.threads[i];
      if (t.exited || t.waiting != Waiting::kNo) continue;
      state.running = &t;
      emulated_switch_context(&state.scheduler_stack_pointer, t.stack_pointer);
      state.running = nullptr;
      if (state.thread_failed) throw Failure("a thread failed");
      ran = true;
      running -= t.exited;
    }
    if (ran || release_warps(count)) continue;
    int at_barrier = 0;
    for (int i = 0; i < count; ++i) {
      at_barrier +=
          !state.threads[i].exited && state.threads[i].waiting == Waiting::kAtBlockBarrier;
    }
    if (at_barrier != running) fail("deadlock: the block's threads wait at different barriers");
    for (int i = 0; i < count; ++i) state.threads[i].waiting = Waiting::kNo;
  }
}

double operand_value(uint32_t word, int half, Operands operands) {
  switch (operands) {
    case Operands::kTf32:  // the tensor cores read 19 bits of each float
      return float_of_bits(word & 0xffffe000u);
    case Operands::kHalf:
      return float_of_half(static_cast<uint16_t>(word >> (16 * half)));
    case Operands::kBfloat16:
      return float_of_bfloat16(static_cast<uint16_t>(word >> (16 * half)));
  }
  fail("unknown operand type");
}

// Element k (of 32 bytes' worth) of row `row` of the K-major operand at descriptor
// `descriptor`, as the PTX ISA lays it out: bits 0-13 the start address / 16, 32-45 the
// stride between 8-row groups / 16, 62-63 the swizzle (2: 64 bytes, whose rows are 64
// bytes and whose 16-byte chunks the address bits 7-8 permute; 1: 128 bytes, rows of 128
// bytes, chunks permuted by bits 7-9).
double warpgroup_operand(uint64_t descriptor, int row, int k, Operands operands) {
  const uint64_t swizzle = descriptor >> 62;
  if (swizzle != 1 && swizzle != 2) {
    fail("a warpgroup MMA descriptor with a swizzle other than 64B or 128B");
  }
  if ((descriptor >> 49 & 7) != 0) fail("a warpgroup MMA descriptor with a base offset");
  const size_t row_bytes = swizzle == 2 ? 64 : 128;
  const size_t start = (descriptor & 0x3FFF) << 4;
  const size_t group_stride = (descriptor >> 32 & 0x3FFF) << 4;
  const size_t element_bytes = operands == Operands::kTf32 ? 4 : 2;
  size_t address = start + row / 8 * group_stride + row % 8 * row_bytes + k * element_bytes;
  address ^= (address >> 7 & (row_bytes / 16 - 1)) << 4;
  if (address + element_bytes > state.shared.size()) {
    fail("a warpgroup MMA reads outside shared memory");
  }
  if (state.unfenced_writer[address / 16] >= 0) {
    fail("a warpgroup MMA reads shared memory a cp.async wrote without fence.proxy.async");
  }
  uint32_t bits = 0;
  std::memcpy(&bits, state.shared.data() + address, element_bytes);
  return operand_value(bits, 0, operands);
}

// This thread's share of one m64n128: rows 16w + g (+ 8), columns 8j + 2t (+ 1), for
// thread 32w + 4g + t of its warpgroup.
void carry_out(const WarpgroupMma& mma) {
  const int index = state.running->linear % 128;
  const int warp = index / 32, g = index % 32 / 4, t = index % 4;
  const int depth = mma.operands == Operands::kTf32 ? 8 : 16;
  for (int j = 0; j < 16; ++j) {
    for (int e = 0; e < 4; ++e) {
      const int row = 16 * warp + g + (e >= 2 ? 8 : 0), column = 8 * j + 2 * t + (e & 1);
      double sum = mma.d[4 * j + e];
      for (int k = 0; k < depth; ++k) {
        sum += warpgroup_operand(mma.a, row, k, mma.operands) *
               warpgroup_operand(mma.b, column, k, mma.operands);
      }
      mma.d[4 * j + e] = static_cast<float>(sum);
    }
  }
}

}  // namespace

const dim3& thread_index() { return state.running->index; }
const dim3& block_index() { return state.block_index; }
const dim3& block_dim() { return state.block; }
const dim3& grid_dim() { return state.grid; }

void sync_threads() {
  state.running->waiting = Waiting::kAtBlockBarrier;
  yield_to_scheduler();
}

unsigned char* dynamic_shared_memory() { return state.shared.data(); }

unsigned shared_address(const void* pointer) {
  const auto* p = static_cast<const unsigned char*>(pointer);
  if (p < state.shared.data() || p > state.shared.data() + state.shared.size()) {
    fail("a shared address of memory that is not shared");
  }
  return static_cast<unsigned>(p - state.shared.data());
}

void cp_async_16(void* shared, const void* global, bool valid) {
  check_shared(shared_address(shared), 16, "cp.async");
  if (valid) {
    if (reinterpret_cast<uintptr_t>(global) % 16 != 0) fail("cp.async source not 16-byte aligned");
    if (state.buffers_known) check_inside_a_buffer(global, 16);
  }
  const Copy copy{static_cast<unsigned char*>(shared), static_cast<const unsigned char*>(global),
                  valid};
  state.running->copies.issue(copy, state.copies_land == CopiesLand::kAtIssue, land);
}

void cp_async_commit() { state.running->copies.commit(); }

void cp_async_wait(int pending) { state.running->copies.wait(pending, land); }

void ldmatrix_x4(uint32_t (&r)[4], unsigned address, bool transposed) {
  check_shared(address, 16, "ldmatrix");
  const int lane = state.running->linear % 32, warp = state.running->linear - lane;
  state.exchange[state.running->linear].address = address;
  wait_for_warp();
  // Lanes 8q to 8q + 7 gave the rows of block q; lane 4g + t gets row g, elements 2t and
  // 2t + 1, or with `transposed` column g, rows 2t and 2t + 1.
  const int g = lane / 4, t = lane % 4;
  const auto row = [&](int q, int i) {
    return state.shared.data() + state.exchange[warp + 8 * q + i].address;
  };
  for (int q = 0; q < 4; ++q) {
    if (transposed) {
      uint16_t upper, lower;
      std::memcpy(&lower, row(q, 2 * t) + 2 * g, 2);
      std::memcpy(&upper, row(q, 2 * t + 1) + 2 * g, 2);
      r[q] = lower | uint32_t{upper} << 16;
    } else {
      std::memcpy(&r[q], row(q, g) + 4 * t, 4);
    }
  }
  wait_for_warp();
}

void mma_m16n8(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], Operands operands) {
  const int lane = state.running->linear % 32, warp = state.running->linear - lane;
  LaneExchange& mine = state.exchange[state.running->linear];
  std::copy(a, a + 4, mine.registers);
  std::copy(b, b + 2, mine.registers + 4);
  wait_for_warp();
  // The fragments of the PTX ISA's m16n8k16 (16-bit operands) and m16n8k8 (TF32) layouts.
  double A[16][16], B[16][8];
  const bool tf32 = operands == Operands::kTf32;
  for (int other = 0; other < 32; ++other) {
    const int g = other / 4, t = other % 4;
    const uint32_t* w = state.exchange[warp + other].registers;
    if (tf32) {
      A[g][t] = operand_value(w[0], 0, operands);
      A[g + 8][t] = operand_value(w[1], 0, operands);
      A[g][t + 4] = operand_value(w[2], 0, operands);
      A[g + 8][t + 4] = operand_value(w[3], 0, operands);
      B[t][g] = operand_value(w[4], 0, operands);
      B[t + 4][g] = operand_value(w[5], 0, operands);
      continue;
    }
    for (int e = 0; e < 2; ++e) {
      A[g][2 * t + e] = operand_value(w[0], e, operands);
      A[g + 8][2 * t + e] = operand_value(w[1], e, operands);
      A[g][2 * t + 8 + e] = operand_value(w[2], e, operands);
      A[g + 8][2 * t + 8 + e] = operand_value(w[3], e, operands);
      B[2 * t + e][g] = operand_value(w[4], e, operands);
      B[2 * t + 8 + e][g] = operand_value(w[5], e, operands);
    }
  }
  const int g = lane / 4, t = lane % 4, depth = tf32 ? 8 : 16;
  const int rows[4] = {g, g, g + 8, g + 8}, columns[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  for (int i = 0; i < 4; ++i) {
    double sum = d[i];
    for (int k = 0; k < depth; ++k) sum += A[rows[i]][k] * B[k][columns[i]];
    d[i] = static_cast<float>(sum);
  }
  wait_for_warp();
}

void fence_proxy_async() {
  Thread& t = *state.running;
  for (size_t chunk : t.unfenced_chunks) {
    if (state.unfenced_writer[chunk] == t.linear) state.unfenced_writer[chunk] = -1;
  }
  t.unfenced_chunks.clear();
}

void wgmma_m64n128(float (&d)[64], uint64_t a, uint64_t b, Operands operands) {
  // At the other extreme from the copies: late MMAs see a stage the copies refill too early,
  // early MMAs a stage whose copies have not landed.
  state.running->mmas.issue(WarpgroupMma{d, a, b, operands},
                            state.copies_land == CopiesLand::kAtWait, carry_out);
}

void wgmma_commit() { state.running->mmas.commit(); }

void wgmma_wait(int pending) { state.running->mmas.wait(pending, carry_out); }

uint32_t round_to_tf32(uint32_t bits) {
  if ((bits & 0x7f800000u) == 0x7f800000u) return bits;  // infinity and NaN stay
  return (bits + 0x1000u) & 0xffffe000u;                 // ties away from zero
}

namespace {

void run_blocks(dim3 grid, dim3 block, size_t shared_bytes, const void* kernel,
                const std::function<void()>& thread_body) {
  if (shared_bytes > 48 * 1024) {
    const auto allowed = state.max_dynamic_shared.find(kernel);
    if (allowed == state.max_dynamic_shared.end() ||
        static_cast<size_t>(allowed->second) < shared_bytes) {
      fail("over 48 KB of dynamic shared memory without cudaFuncSetAttribute");
    }
  }
  const int count = static_cast<int>(block.x * block.y * block.z);
  if (count < 1 || count > 1024 || block.z > 64) fail("a block size no GPU launches");
  if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.y > 65535 || grid.z > 65535) {
    fail("a grid size no GPU launches");
  }
  state.grid = grid;
  state.block = block;
  state.thread_body = &thread_body;
  if (state.threads.size() < static_cast<size_t>(count)) state.threads.resize(count);
  state.exchange.assign(count, LaneExchange{});
  std::vector<dim3> blocks;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) blocks.emplace_back(x, y, z);
    }
  }
  std::shuffle(blocks.begin(), blocks.end(), state.random);
  for (const dim3& b : blocks) {
    state.block_index = b;
    state.shared.assign(shared_bytes, 0xff);
    state.unfenced_writer.assign((shared_bytes + 15) / 16, -1);
    run_block(count);
  }
}

}  // namespace

void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const void* kernel,
              const std::function<void()>& thread_body) {
  if (!state.error.empty()) return;  // as after a sticky error, nothing more runs
  try {
    run_blocks(grid, block, shared_bytes, kernel, thread_body);
  } catch (const Failure&) {
    state.running = nullptr;
    state.thread_failed = false;
  }
  state.thread_body = nullptr;
}

const char* last_error() { return state.error.c_str(); }

void register_buffer(const void* data, size_t bytes) {
  state.buffers[reinterpret_cast<uintptr_t>(data)] = bytes;
}
void clear_buffers() {
  state.buffers.clear();
  state.buffers_known = true;
}

void configure(CopiesLand copies, unsigned seed) {
  state.copies_land = copies;
  state.random.seed(seed);
  state.error.clear();
}

}  // namespace emulated

cudaError_t cudaGetLastError() {
  if (emulated::state.error.empty()) return cudaSuccess;
  return cudaErrorLaunchFailure;
}

cudaError_t emulated_set_max_dynamic_shared(const void* kernel, int bytes) {
  if (bytes > 227 * 1024) return cudaErrorInvalidValue;  // the most a Hopper block may have
  emulated::state.max_dynamic_shared[kernel] = bytes;
  return cudaSuccess;
}
