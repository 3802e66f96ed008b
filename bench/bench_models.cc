#include "bench/bench_models.h"

#include <unistd.h>

#include <fstream>

#include <ATen/ATen.h>

namespace skillpack {

ModelConfig BenchShape(const std::string& name) {
  Json j = {{"model_type", "llama"}, {"rms_norm_eps", 1e-5}, {"max_position_embeddings", 2048}};
  if (name == "tiny") {
    j.update({{"vocab_size", 264},
              {"hidden_size", 256},
              {"intermediate_size", 704},
              {"num_hidden_layers", 4},
              {"num_attention_heads", 8},
              {"num_key_value_heads", 4}});
  } else {  // TinyLlama-1.1B
    j.update({{"vocab_size", 32000},
              {"hidden_size", 2048},
              {"intermediate_size", 5632},
              {"num_hidden_layers", 22},
              {"num_attention_heads", 32},
              {"num_key_value_heads", 4}});
  }
  return *ParseModelConfig(j, name);
}

std::shared_ptr<const ModelWeights> RandomBenchWeights(const ModelConfig& c) {
  at::manual_seed(0);
  std::map<std::string, at::Tensor> t;
  for (const TensorSpec& s : ExpectedTensors(c)) {
    t[s.name] = s.name.find("norm") != std::string::npos ? at::ones(s.shape) : at::randn(s.shape) * 0.02;
  }
  return *ModelWeights::Create(c, std::move(t));
}

std::map<std::string, std::pair<at::Tensor, at::Tensor>> SyntheticFactors(const ModelWeights& base, int64_t rank,
                                                                          uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> out;
  for (const auto& [name, t] : base.tensors()) {
    if (t.dim() != 2 || name.find("layers.") == std::string::npos) continue;
    at::Tensor us = at::randn({t.size(0), rank}, gen) * 0.01;
    at::Tensor vt = at::randn({rank, t.size(1)}, gen) * 0.01;
    out.emplace(name, std::make_pair(std::move(us), std::move(vt)));
  }
  return out;
}

int64_t SyntheticPackRank(const std::string& shape) { return shape == "tiny" ? 16 : 32; }

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace skillpack
