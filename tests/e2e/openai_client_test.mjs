// The OpenAI-compatible HTTP API as a user of the official `openai` npm
// package (pinned in tests/npm) sees it, against the real skillpack-server
// that tests/e2e/openai_test.cc started. That test computed the expected
// answers through the gRPC API (same prompts, packs and sampling) and passes
// them in a JSON file: the HTTP answers must be the same text.
// Usage: node openai_client_test.mjs NPM_DIR BASE_URL EXPECTED.json
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import test from "node:test";
import assert from "node:assert/strict";

const [npmDir, baseURL, expectedFile] = process.argv.slice(2);
const require = createRequire(path.join(npmDir, "node_modules", "noop.js"));
const openai = require("openai");
const { OpenAI, NotFoundError, BadRequestError } = openai;
const want = JSON.parse(readFileSync(expectedFile, "utf8"));
// No API key is configured on the server; the client insists on one.
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60000 });

const greedy = { max_tokens: want.max_tokens, temperature: 0 };

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

test("models list: base, auto and each pack", async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    assert.equal(m.object, "model");
    ids.push(m.id);
  }
  assert.deepEqual(ids.sort(), [want.base, "alpha", "auto", "beta"].sort());
  const one = await client.models.retrieve("alpha");
  assert.equal(one.id, "alpha");
});

test("completion with a pack equals gRPC's, and differs from the base", async () => {
  const { data, response } = await client.completions
    .create({ model: "alpha", prompt: want.prompt, ...greedy })
    .withResponse();
  assert.equal(response.headers.get("x-skillpack-packs"), "alpha=1");
  assert.equal(data.object, "text_completion");
  assert.match(data.id, /^cmpl-/);
  assert.equal(data.model, "alpha");
  assert.equal(data.choices.length, 1);
  assert.equal(data.choices[0].text, want.alpha_text);
  assert.equal(data.choices[0].finish_reason, want.alpha_finish);
  assert.equal(data.usage.prompt_tokens, want.prompt_tokens);
  assert.equal(data.usage.completion_tokens, want.alpha_tokens);
  assert.equal(data.usage.total_tokens, want.prompt_tokens + want.alpha_tokens);
  assert.deepEqual(data.skillpack.packs, [{ name: "alpha", weight: 1 }]);

  const base = await client.completions.create({ model: want.base, prompt: want.prompt, ...greedy }).withResponse();
  assert.equal(base.response.headers.get("x-skillpack-packs"), "none");
  assert.equal(base.data.choices[0].text, want.base_text);
  assert.notEqual(base.data.choices[0].text, data.choices[0].text);
});

test("streamed completion: same text, finish reason, usage chunk", async () => {
  const chunks = await collect(
    await client.completions.create({
      model: "alpha",
      prompt: want.prompt,
      ...greedy,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );
  assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
  const text = chunks.map((c) => (c.choices[0] ? c.choices[0].text : "")).join("");
  assert.equal(text, want.alpha_text);
  const finishes = chunks.filter((c) => c.choices[0] && c.choices[0].finish_reason);
  assert.equal(finishes.length, 1);
  assert.equal(finishes[0].choices[0].finish_reason, want.alpha_finish);
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, want.alpha_tokens);
  assert.equal(last.usage.prompt_tokens, want.prompt_tokens);
  for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
});

test("chat, stream and not, with the model's chat template", async () => {
  const messages = [{ role: "user", content: want.chat_user }];
  const r = await client.chat.completions.create({ model: "alpha", messages, ...greedy });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(r.choices[0].message.content, want.chat_text);
  assert.equal(r.usage.prompt_tokens, want.chat_prompt_tokens);

  const chunks = await collect(
    await client.chat.completions.create({ model: "alpha", messages, ...greedy, stream: true }),
  );
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  assert.equal(chunks.map((c) => c.choices[0].delta.content ?? "").join(""), want.chat_text);
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
  assert.equal(chunks[chunks.length - 1].choices[0].finish_reason, want.chat_finish);

  // max_completion_tokens is the newer name of max_tokens.
  const short = await client.chat.completions.create({
    model: "alpha",
    messages,
    temperature: 0,
    max_completion_tokens: 2,
    ignore_eos: true,
  });
  assert.equal(short.usage.completion_tokens, 2);
  assert.equal(short.choices[0].finish_reason, "length");
});

test("stop strings end the text before them", async () => {
  for (const stop of [want.stop, [want.stop]]) {
    const r = await client.completions.create({ model: "alpha", prompt: want.prompt, ...greedy, stop });
    assert.equal(r.choices[0].text, want.stop_text);
    assert.equal(r.choices[0].finish_reason, "stop");
  }
});

test("a seed reproduces a sampled completion (the same as gRPC's)", async () => {
  const req = { model: "alpha", prompt: want.prompt, max_tokens: want.max_tokens, temperature: 1, seed: 7 };
  const a = await client.completions.create(req);
  const b = await client.completions.create(req);
  assert.equal(a.choices[0].text, b.choices[0].text);
  assert.equal(a.choices[0].text, want.seed_text);
  const c = await client.completions.create({ ...req, seed: 8 });
  assert.equal(c.choices[0].text, want.seed8_text);
});

test("auto: the router decides, reported in the header and the response", async () => {
  const { data, response } = await client.completions
    .create({ model: "auto", prompt: want.auto_prompt, ...greedy })
    .withResponse();
  assert.equal(response.headers.get("x-skillpack-packs"), want.auto_packs);
  assert.equal(data.choices[0].text, want.auto_text);
  assert.equal(data.skillpack.packs.map((p) => `${p.name}=${p.weight}`).join(",") || "none", want.auto_packs);
});

test("logprobs: each generated token's log-probability, as gRPC's", async () => {
  const r = await client.completions.create({ model: "alpha", prompt: want.prompt, ...greedy, logprobs: 0 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.token_logprobs.length, r.usage.completion_tokens);
  assert.equal(lp.tokens.length, r.usage.completion_tokens);
  lp.token_logprobs.forEach((v, i) => assert.ok(Math.abs(v - want.alpha_logprobs[i]) < 1e-4, `token ${i}: ${v}`));
  assert.equal(lp.text_offset[0], 0);

  const c = await client.chat.completions.create({
    model: "alpha",
    messages: [{ role: "user", content: want.chat_user }],
    ...greedy,
    logprobs: true,
  });
  assert.equal(c.choices[0].logprobs.content.length, c.usage.completion_tokens);
  for (const t of c.choices[0].logprobs.content) {
    assert.ok(t.logprob <= 0);
    assert.ok(Array.isArray(t.bytes));
    assert.deepEqual(t.top_logprobs, []);
  }
});

test("errors: OpenAI-shaped, as the client's error classes", async () => {
  await assert.rejects(client.completions.create({ model: "no-such-pack", prompt: "x" }), (e) => {
    assert.ok(e instanceof NotFoundError, String(e));
    assert.equal(e.status, 404);
    assert.equal(e.code, "model_not_found");
    assert.equal(e.param, "model");
    assert.match(e.message, /no-such-pack/);
    return true;
  });
  const bad = [
    [{ model: "alpha", prompt: "x", temperature: -1 }, "temperature"],
    [{ model: "alpha", prompt: "x", n: 2 }, "n"],
    [{ model: "alpha", prompt: "x", max_tokens: 0 }, "max_tokens"],
    [{ model: "alpha", prompt: "x", max_tokens: 100000 }, "max_tokens"],
    [{ model: "alpha", prompt: "" }, "prompt"],
    [{ model: "alpha", prompt: "x", logprobs: 3 }, "logprobs"],
  ];
  for (const [req, param] of bad) {
    await assert.rejects(client.completions.create(req), (e) => {
      assert.ok(e instanceof BadRequestError, `${JSON.stringify(req)}: ${e}`);
      assert.equal(e.status, 400);
      assert.equal(e.type, "invalid_request_error");
      assert.equal(e.param, param, e.message);
      return true;
    });
  }
  await assert.rejects(
    client.chat.completions.create({ model: want.base, messages: [{ role: "tool", content: "x" }] }),
    (e) => e instanceof BadRequestError && e.param === "messages[0].role",
  );
  await assert.rejects(
    client.chat.completions.create({
      model: want.base,
      messages: [{ role: "user", content: "x" }],
      logprobs: true,
      top_logprobs: 2,
    }),
    (e) => e instanceof BadRequestError && e.param === "top_logprobs",
  );
});
