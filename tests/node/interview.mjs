// A whole interview, in text, with the official OpenAI Node SDK's realtime
// WebSocket client (`OpenAIRealtimeWS` from `openai/realtime/ws`), configured
// as any SDK program would be: OPENAI_BASE_URL (https://HOST:PORT/v1; the
// SDK turns it into wss://HOST:PORT/v1/realtime?model=..., it speaks wss://
// only) and OPENAI_API_KEY (here an interviewd invite token, which the SDK
// sends as `Authorization: Bearer`). A private CA is trusted the Node way,
// with NODE_EXTRA_CA_CERTS.
//
// Usage: NODE_PEER_DIR=target/node-peer OPENAI_BASE_URL=https://127.0.0.1:PORT/v1 \
//        OPENAI_API_KEY=ivt_... NODE_EXTRA_CA_CERTS=ca.pem node22 tests/node/interview.mjs
// (NODE_PEER_DIR: where tests/node/setup.sh installed the SDK; default
// <repo>/target/node-peer.) Optional: INTERVIEW_TIMEOUT_MS (default 60000).
//
// On every `response.done` whose `response.metadata.interview_phase` is
// "interview" it answers (conversation.item.create) and asks for the next
// turn (response.create); after the "closing" one it waits for
// `interview.assessment.completed` and the server's close. Then it prints one
// JSON line: {"session_id", "responses", "answers", "phases",
// "report_delivered", "shared", "report" (as delivered), "close_code",
// "close_reason", "events", "elapsed_ms"} and exits 0.
// Any `error` event, transport failure, unexpected close or the timeout:
// exit 1 with the reason on stderr.

import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const peerDir = path.resolve(process.env.NODE_PEER_DIR ?? path.join(here, '../../target/node-peer'));
const sdk = (entry) => import(pathToFileURL(path.join(peerDir, 'node_modules/openai', entry)).href);
const { OpenAI } = await sdk('index.mjs');
const { OpenAIRealtimeWS } = await sdk('realtime/ws.mjs');

const timeoutMs = Number(process.env.INTERVIEW_TIMEOUT_MS ?? 60000);

// About 50 words (the built-in script asks for at most 40 before a follow-up).
const ANSWER =
  'I would start from the tests that fail and the logs around each failure, ' +
  'then check the metrics for latency spikes or error rates at the same time. ' +
  'If it looks like contention I would look at the locks held, add a regression test, ' +
  'fix the ordering, and watch the metrics and logs after the release to confirm it.';

const started = Date.now();
let finished = false;
const summary = {
  session_id: null,
  responses: 0,
  answers: 0,
  phases: [],
  report_delivered: false,
  shared: null,
  report: null,
  close_code: null,
  close_reason: null,
  events: 0,
};

function fail(reason) {
  if (finished) return;
  finished = true;
  process.stderr.write(
    `interview.mjs: ${reason} (after ${Date.now() - started} ms; so far: ${JSON.stringify(summary)})\n`,
  );
  process.exit(1);
}

const timer = setTimeout(() => fail(`no complete interview within ${timeoutMs} ms`), timeoutMs);

const client = new OpenAI(); // OPENAI_API_KEY, OPENAI_BASE_URL
const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime' }, client);
process.stderr.write(`interview.mjs: connecting to ${rt.url.origin}${rt.url.pathname}\n`);

rt.on('error', (err) => fail(`SDK error: ${err.message}`));
rt.socket.on('unexpected-response', (_req, res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (chunk) => (body += chunk));
  res.on('end', () => fail(`the server refused the WebSocket upgrade: HTTP ${res.statusCode} ${JSON.stringify(body.trim())}`));
  res.on('error', () => fail(`the server refused the WebSocket upgrade: HTTP ${res.statusCode}`));
});

// Every server event, the daemon's own interview.* ones included (the SDK
// passes events of any type through its `event` listener).
rt.on('event', (event) => {
  summary.events += 1;
  switch (event.type) {
    case 'session.created':
      summary.session_id = event.session?.id ?? null;
      break;
    case 'response.done': {
      summary.responses += 1;
      const phase = event.response?.metadata?.interview_phase;
      summary.phases.push(phase ?? null);
      if (event.response?.status !== 'completed') {
        fail(`response ${event.response?.id} ended ${event.response?.status}`);
      } else if (phase === 'interview') {
        rt.send({
          type: 'conversation.item.create',
          item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: ANSWER }] },
        });
        rt.send({ type: 'response.create' });
        summary.answers += 1;
      } else if (phase !== 'closing') {
        fail(`response.done without a known metadata.interview_phase: ${JSON.stringify(event.response?.metadata)}`);
      }
      break;
    }
    case 'interview.assessment.completed':
      summary.report_delivered = true;
      summary.shared = event.shared ?? null;
      summary.report = event.report ?? null;
      break;
    case 'interview.assessment.failed':
      fail(`the assessment failed: ${event.reason}`);
      break;
    default:
      break;
  }
});

rt.socket.on('close', (code, reason) => {
  summary.close_code = code;
  summary.close_reason = reason.toString();
  if (!summary.report_delivered) {
    fail(`the connection closed (${code} ${JSON.stringify(summary.close_reason)}) before the report arrived`);
    return;
  }
  clearTimeout(timer);
  finished = true;
  summary.elapsed_ms = Date.now() - started;
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exit(0);
});
