// The op recorder: see below. The safe Rust side is `src/torch_ext/recorder.rs`; the conventions
// are csrc/torch_ext.h's.
#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "torch_ext.h"

using resnext_ext::malloc_copy;
using resnext_ext::protect;

namespace {

// Op recorder: every ATen operator call (and our own ops, recorded under "resnext::" names) by
// name, with its calls, how many of them were outermost (an op's nested calls, such as conv2d
// -> convolution -> mkldnn_convolution, are not outermost) and its self time (its own time less
// that of the ops it called), as torch.profiler's "self CPU" column. The callback is
// thread-local, and the autograd engine carries thread-local state to the threads it runs
// backward on, so the record covers the recording thread's forward and backward and nothing
// other threads do.
struct OpRecord {
  uint64_t calls = 0;
  uint64_t outermost = 0;
  int64_t self_ns = 0;
};
std::mutex records_mutex;
std::map<std::string, OpRecord> records;
at::CallbackHandle recorder = 0;

struct Frame {
  int64_t start_ns;
  int64_t children_ns;
};
thread_local std::vector<Frame> frames;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Only dispatched operators have an operator name: the autograd engine's own records around
// each backward node ("autograd::engine::evaluate_function: ...") do not, and the operators
// those nodes call count as outermost. Our ops are user-scope records.
bool is_operator(const at::RecordFunction& fn) {
  return fn.operator_name().has_value() || fn.scope() == at::RecordScope::USER_SCOPE;
}

std::unique_ptr<at::ObserverContext> op_start(const at::RecordFunction& fn) {
  if (is_operator(fn)) frames.push_back({now_ns(), 0});
  return nullptr;
}

void op_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (!is_operator(fn) || frames.empty()) return;
  const Frame frame = frames.back();
  frames.pop_back();
  const int64_t total = now_ns() - frame.start_ns;
  if (!frames.empty()) frames.back().children_ns += total;
  std::lock_guard<std::mutex> lock(records_mutex);
  OpRecord& record = records[fn.name()];
  record.calls += 1;
  record.outermost += frames.empty();
  record.self_ns += std::max<int64_t>(0, total - frame.children_ns);
}

}  // namespace

extern "C" {

char* ext_op_recorder_start() {
  return protect([&] {
    if (recorder != 0) throw std::runtime_error("the op recorder is already running");
    records.clear();
    recorder = at::addThreadLocalCallback(
        at::RecordFunctionCallback(op_start, op_end).needsInputs(false).needsOutputs(false).needsIds(false).scopes(
            {at::RecordScope::FUNCTION, at::RecordScope::USER_SCOPE}));
  });
}

// The records as lines of "name<TAB>calls<TAB>outermost calls<TAB>self nanoseconds", in a
// string the caller frees with ext_free_error.
char* ext_op_recorder_stop(char** table) {
  return protect([&] {
    if (recorder == 0) throw std::runtime_error("the op recorder is not running");
    at::removeCallback(recorder);
    recorder = 0;
    std::string text;
    std::lock_guard<std::mutex> lock(records_mutex);
    for (const auto& [name, record] : records)
      text += name + "\t" + std::to_string(record.calls) + "\t" + std::to_string(record.outermost) + "\t" +
              std::to_string(record.self_ns) + "\n";
    *table = malloc_copy(text.c_str());
  });
}

}  // extern "C"
