#include "store/etcd/etcd_store.h"

namespace flotilla::store {

absl::StatusOr<std::unique_ptr<Store>> OpenEtcdStore(std::shared_ptr<etcd::EtcdClient>,
                                                     const std::string&, EtcdFence) {
  return absl::UnimplementedError("the etcd store is not written yet");
}

}  // namespace flotilla::store
