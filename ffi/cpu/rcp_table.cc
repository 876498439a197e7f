// Storage for the host copy of the rcp.approx.ftz.f32 mismatch table (SPEC 1.4).
#include <cstdint>
#include <vector>

#include "handlers.h"

namespace jax_fp4::cpu {

bool SetRcpTable(const uint32_t* words, size_t count) {
  static std::vector<uint32_t> table;
  if (count != (size_t{1} << 23) / 32) return false;
  if (table.empty()) {
    table.assign(words, words + count);
    g_rcp_mismatch_table = table.data();
  }
  return true;
}

}  // namespace jax_fp4::cpu
