// The official `openai` Node client against `strata serve` (run by openai_npm_test.sh, which
// installs the package and starts the server). usage: node openai_npm_test.mjs NODE_MODULES_DIR BASE_URL
// Every call must succeed and its result satisfy the parameters it was made with.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const [dir, baseURL] = process.argv.slice(2);
const require = createRequire(dir + '/');
const OpenAI = require('openai');
const client = new OpenAI({ baseURL, apiKey: 'unused' });

const models = await client.models.list();
const ids = models.data.map((m) => m.id);
assert.equal(ids.length, 1, 'one model');
const model = ids[0];
assert.equal((await client.models.retrieve(model)).id, model);
await assert.rejects(client.models.retrieve('no-such-model'), (e) => e.status === 404);

// completions: n = 2 with logprobs, then stop (the stop text is never returned)
const c = await client.completions.create({ model, prompt: 'hello world', max_tokens: 6, n: 2, logprobs: 2, seed: 4 });
assert.equal(c.choices.length, 2, 'n=2 gives 2 choices');
for (const ch of c.choices) {
  assert.equal(ch.logprobs.tokens.length, 6);
  assert.equal(ch.logprobs.token_logprobs.length, 6);
  assert.ok(ch.logprobs.top_logprobs.every((t) => Object.keys(t).length === 2));
  assert.equal(ch.logprobs.tokens.join(''), ch.text);
}
assert.equal(c.usage.completion_tokens, 12);
const full = c.choices[0].text;
const stop = full.split(' ')[3].slice(0, 3); // a string inside the third token
const want = full.slice(0, full.indexOf(stop));
const cs = await client.completions.create({ model, prompt: 'hello world', max_tokens: 6, seed: 4, stop: [stop] });
assert.equal(cs.choices[0].text, want);
assert.equal(cs.choices[0].finish_reason, 'stop');

// completions streamed with stop, n = 2 and usage
let streamed = ['', ''];
let usage = null, finishes = 0;
const s = await client.completions.create({ model, prompt: 'hello world', max_tokens: 6, seed: 4, n: 2, stop,
                                           stream: true, stream_options: { include_usage: true } });
for await (const chunk of s) {
  if (chunk.usage) usage = chunk.usage;
  for (const ch of chunk.choices) {
    streamed[ch.index] += ch.text;
    if (ch.finish_reason) finishes++;
  }
}
assert.equal(streamed[0], want, 'streamed text stops before the stop string');
assert.ok(!streamed[1].includes(stop));
assert.equal(finishes, 2);
assert.ok(usage && usage.completion_tokens > 0 && usage.prompt_tokens_details.cached_tokens === 0);

// chat, not streamed: n = 2, logprobs with top_logprobs, stop
const chat = await client.chat.completions.create({ model, messages: [{ role: 'system', content: 'brief' },
  { role: 'user', content: 'hi' }], max_tokens: 5, n: 2, logprobs: true, top_logprobs: 3, seed: 9 });
assert.equal(chat.object, 'chat.completion');
assert.equal(chat.choices.length, 2);
for (const ch of chat.choices) {
  assert.equal(ch.message.role, 'assistant');
  assert.equal(ch.logprobs.content.length, 5);
  assert.ok(ch.logprobs.content.every((t) => t.top_logprobs.length === 3 && typeof t.logprob === 'number'));
  assert.equal(ch.logprobs.content.map((t) => t.token).join(''), ch.message.content);
}
const ctext = chat.choices[0].message.content;
const cstop = ctext.split(' ')[2].slice(0, 3);
const chatStop = await client.chat.completions.create({ model, messages: [{ role: 'system', content: 'brief' },
  { role: 'user', content: 'hi' }], max_tokens: 5, seed: 9, stop: cstop });
assert.equal(chatStop.choices[0].message.content, ctext.slice(0, ctext.indexOf(cstop)));
assert.equal(chatStop.choices[0].finish_reason, 'stop');

// chat streamed: deltas, n = 2, stop, usage in its own last chunk
const cst = await client.chat.completions.create({ model, messages: [{ role: 'system', content: 'brief' },
  { role: 'user', content: 'hi' }], max_tokens: 5, seed: 9, n: 2, stop: cstop, stream: true,
  stream_options: { include_usage: true } });
let deltas = ['', ''], roles = 0, lastUsage = null, chunks = 0;
for await (const chunk of cst) {
  chunks++;
  assert.equal(chunk.object, 'chat.completion.chunk');
  if (chunk.usage) { lastUsage = chunk.usage; assert.equal(chunk.choices.length, 0); }
  for (const ch of chunk.choices) {
    if (ch.delta.role) roles++;
    if (ch.delta.content) deltas[ch.index] += ch.delta.content;
  }
}
assert.equal(deltas[0], ctext.slice(0, ctext.indexOf(cstop)));
assert.equal(roles, 2);
assert.ok(lastUsage && lastUsage.total_tokens > 0);

// a parameter strata does not implement: 400 naming it
await assert.rejects(client.completions.create({ model, prompt: 'x', logit_bias: { '1': 5 } }),
                     (e) => e.status === 400 && e.param === 'logit_bias');
const { readFileSync } = require('node:fs');
const version = JSON.parse(readFileSync(dir + '/openai/package.json', 'utf8')).version;
console.log('openai npm client ' + version + ': ok');
