// libFuzzer target: tokenizer.json loading (core/tokenizer.h) plus encoding.
// Input: tokenizer.json text, optionally followed by a NUL byte and a
// tokenizer_config.json text (JSON text never holds a raw NUL). A tokenizer
// that loads encodes a few fixed strings and the input itself (any bytes),
// every id it produces is in range, and decoding gives valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// Well-formed UTF-8 (Unicode 15, table 3-7): no overlongs, surrogates or
// code points above U+10FFFF.
bool ValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (int k = 1; k <= n; ++k) {
      const unsigned char b = s[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace skillpack;
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string json = input.substr(0, nul);
  const std::string config = nul == std::string::npos ? std::string() : input.substr(nul + 1);
  auto tok = Tokenizer::FromJson(json, "fuzz/tokenizer.json", config);
  if (!tok.ok()) {
    fuzz::CheckRejection(tok.status());
    return 0;
  }
  const Tokenizer& t = **tok;
  const std::vector<std::string> texts = {
      "Hello, world! 123 456789",          "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
      " \t\n  leading and trailing  \r\n", "\xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82 caf\xc3\xa9",
      "\xff\xfe invalid \xc3 utf-8 \x80",  input.substr(0, 4096),
  };
  for (const std::string& text : texts) {
    for (bool special : {true, false}) {
      std::vector<int32_t> ids = t.Encode(text, special, /*add_bos=*/true);
      for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < t.vocab_size());
      const std::string back = t.Decode(ids, /*skip_special=*/!special);
      FUZZ_CHECK(ValidUtf8(back));
    }
  }
  return 0;
}
