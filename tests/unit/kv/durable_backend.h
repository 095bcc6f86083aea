// DurableBackend: makes MemoryKv stores that write through StoreKvPersistence
// to a real SQLite Store (in memory: the contract suites test the store's
// behaviour with persistence on, durable_kv_test.cc tests restarts on disk).
// It owns the Stores, so it must outlive the KvStores it made.
#pragma once

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kv/clock.h"
#include "kv/memory_kv.h"
#include "kv/store_persistence.h"
#include "store/store.h"

namespace flotilla::kv::testing {

class DurableBackend {
 public:
  std::unique_ptr<MemoryKv> Make(const Clock* clock, const KvLimits& limits) {
    auto sqlite = store::OpenSqliteStore(":memory:", store::Durability::kProcessCrash);
    EXPECT_TRUE(sqlite.ok()) << sqlite.status();
    if (!sqlite.ok()) return nullptr;
    stores_.push_back(std::move(*sqlite));
    persistences_.push_back(std::make_unique<StoreKvPersistence>(stores_.back().get()));
    return std::make_unique<MemoryKv>(clock, limits, persistences_.back().get());
  }

 private:
  std::vector<std::unique_ptr<store::Store>> stores_;
  std::vector<std::unique_ptr<StoreKvPersistence>> persistences_;
};

}  // namespace flotilla::kv::testing
