// The official OpenAI SDK (npm `openai`) against the front end's OpenAI API: the calls an
// application makes, each checked. Usage: node sdk_check.cjs BASE_URL EXPECTED_TEXT
// EXPECTED_TEXT is the greedy continuation of "def fibonacci(n):" (16 tokens) that the
// gRPC client got from the same cluster: the HTTP path must give the same text.
// CommonJS, so that NODE_PATH finds the SDK installed outside the workspace.
const OpenAI = require('openai');

const [baseURL, expected] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 });
let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
}

async function main() {
  const models = await client.models.list();
  check(models.data.length === 1 && models.data[0].id === 'apr-tiny', 'models.list names apr-tiny');

  const c = await client.completions.create({
    model: 'apr-tiny', prompt: 'def fibonacci(n):', max_tokens: 16, temperature: 0 });
  check(c.choices[0].text === expected, `completions.create text = the gRPC client's (${JSON.stringify(c.choices[0].text)})`);
  check(c.usage.completion_tokens === 16 && c.usage.prompt_tokens > 0, 'completions usage counts');
  check(c.choices[0].finish_reason === 'length', 'finish_reason length at max_tokens');

  let streamed = '';
  let usage = null;
  const s = await client.completions.create({
    model: 'apr-tiny', prompt: 'def fibonacci(n):', max_tokens: 16, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  for await (const chunk of s) {
    if (chunk.choices.length) streamed += chunk.choices[0].text;
    if (chunk.usage) usage = chunk.usage;
  }
  check(streamed === expected, 'streamed completion = the whole one');
  check(usage && usage.completion_tokens === 16, 'stream_options.include_usage sends usage last');

  const chat = await client.chat.completions.create({
    model: 'apr-tiny', messages: [{ role: 'system', content: 'You write Python.' },
                                  { role: 'user', content: 'A stack class.' }],
    max_tokens: 12, temperature: 0, seed: 5 });
  const chatText = chat.choices[0].message.content;
  check(chat.choices[0].message.role === 'assistant' && chatText.length > 0, 'chat.completions.create answers');
  let chatStreamed = '';
  const cs = await client.chat.completions.create({
    model: 'apr-tiny', messages: [{ role: 'system', content: 'You write Python.' },
                                  { role: 'user', content: 'A stack class.' }],
    max_tokens: 12, temperature: 0, seed: 5, stream: true });
  for await (const chunk of cs) chatStreamed += chunk.choices[0]?.delta?.content ?? '';
  check(chatStreamed === chatText, 'streamed chat = the whole one');

  const stopped = await client.completions.create({
    model: 'apr-tiny', prompt: 'def fibonacci(n):', max_tokens: 16, temperature: 0, stop: ['\n'] });
  check(stopped.choices[0].text === expected.split('\n')[0] && stopped.choices[0].finish_reason === 'stop',
        'stop cuts the text before the first match');

  try {
    await client.completions.create({ model: 'gpt-4', prompt: 'x' });
    check(false, 'an unknown model is refused');
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError && e.code === 'model_not_found', 'an unknown model is NotFoundError model_not_found');
  }
  try {
    await client.completions.create({ model: 'apr-tiny', prompt: 'x', n: 3 });
    check(false, 'n = 3 is refused');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.param === 'n', 'n = 3 is BadRequestError naming n');
  }
  console.log(`${failures === 0 ? 'sdk_check: all passed' : `sdk_check: ${failures} failed`}`);
  process.exit(failures === 0 ? 0 : 1);
}
main().catch((e) => { console.error(e); process.exit(1); });
