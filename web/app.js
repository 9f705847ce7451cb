// The candidate's interview page. It speaks the OpenAI Realtime protocol to
// /v1/realtime on this origin (docs/protocol.md): voice through the
// microphone when the interviewer is a Realtime model (the relay), text
// always. The transcript is kept by item id, so the replay after a resume
// adds nothing twice; dropped connections are resumed with backoff.
import { Voice, RATE, voiceSupported } from "./audio.js";

const $ = (id) => document.getElementById(id);
const ui = {
  intro: $("intro"), start: $("start"), status: $("status"), steps: $("steps"),
  voice: $("voice"), micRow: $("mic-row"), mute: $("mute"), level: $("level"), micNote: $("mic-note"),
  micRetry: $("mic-retry"), transcript: $("transcript"), form: $("answer-form"),
  answer: $("answer"), send: $("send"), finish: $("finish"), confirm: $("confirm-finish"),
  confirmYes: $("confirm-yes"), confirmNo: $("confirm-no"), assessing: $("assessing"),
  elapsed: $("elapsed"), report: $("report"), reportBody: $("report-body"), end: $("end"),
  endTitle: $("end-title"), endText: $("end-text"), endAction: $("end-action"),
};

/** Voiced, as the Realtime API's default server VAD sees it (1 % of full scale). */
const VOICED_RMS = 0.01;
const SCRIPTED_MODEL = "interviewd-scripted";
const MAX_RETRIES = 40; // about six minutes of trying, within the resume window

// Read by the browser tests; harmless otherwise.
const hooks = {
  phase: "start", connected: false, sessionId: null, model: null, mode: null, mic: "off",
  chunksSent: 0, voicedChunksSent: 0, bytesSent: 0, samplesReceived: 0, samplesPlayed: 0,
  underruns: 0, audioItems: 0, lastTruncate: null, truncates: 0, reconnects: 0,
  closes: [], errors: [], roundTrips: [], cspViolations: 0, outputLatencyMs: 0,
  firstChunkAt: null, lastChunkAt: null, said: [],
};
window.__interviewd = hooks;
document.addEventListener("securitypolicyviolation", () => { hooks.cspViolations += 1; });

// --- The key: the invite from #invite=TOKEN, or this tab's resume token.

const STORE = "interviewd.session";
const fragment = new URLSearchParams(location.hash.slice(1));
let stored = {};
try {
  stored = JSON.parse(sessionStorage.getItem(STORE) || "{}") || {};
} catch {
  stored = {};
}
const invite = fragment.get("invite") || stored.invite || null;
if (fragment.get("invite") && stored.invite !== invite) stored = {};
if (location.hash) {
  // Keep the token out of the address bar (and of screenshots of it); this
  // tab remembers it for a reload.
  history.replaceState(null, "", location.pathname + location.search);
}
// A new invite link opened in this tab changes only the fragment: start
// afresh with it.
window.addEventListener("hashchange", () => {
  const next = new URLSearchParams(location.hash.slice(1)).get("invite");
  if (next && next !== invite) location.reload();
});
let resumeToken = stored.resumeToken || null;
let sessionId = stored.sessionId || null;

function remember() {
  try {
    sessionStorage.setItem(STORE, JSON.stringify({ invite, resumeToken, sessionId }));
  } catch {
    // Private modes may refuse storage: the session still lives in memory.
  }
}
function forget() {
  try {
    sessionStorage.removeItem(STORE);
  } catch {
    // As above.
  }
}

// --- State.

let ws = null;
let opened = false; // this socket got session.created
let everConnected = false; // any socket did
let retries = 0;
let retryTimer = null;
let phase = "start"; // start, connecting, interview, closing, assessing, done, ended
let mode = null; // "voice" or "text"
let responding = false; // a response is in progress
let waitingForAnswer = false; // our answer is sent, its confirmation not yet in
let pendingAnswer = null;
let eventSeq = 0;
let voice = null;
let micState = "off";
let elapsedBase = null;
let elapsedTimer = null;
let lastVoicedAt = null;
let committedAt = null;
let awaitingReplyAudio = false;
const interrupted = new Set();
const lines = new Map();

function setPhase(p) {
  phase = p;
  hooks.phase = p;
  const order = ["interview", "assessing", "done"];
  // "ended": stopped short of a result (refused, taken over, failed).
  const at = { start: -1, connecting: 0, interview: 0, closing: 0, assessing: 1, done: 2, ended: -1 }[p];
  for (const li of ui.steps.children) {
    const i = order.indexOf(li.dataset.step);
    li.classList.toggle("done", i < at);
    if (i === at) li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
  }
  if (p === "closing" || p === "assessing" || p === "done" || p === "ended") stopMicrophone();
  updateControls();
}

function say(text) {
  ui.status.textContent = text;
  hooks.said.push(text);
  if (hooks.said.length > 50) hooks.said.shift();
}

function updateControls() {
  const live = opened && (phase === "interview");
  ui.form.hidden = !(mode && (phase === "interview" || phase === "connecting") && everConnected);
  ui.send.disabled = !live || responding || waitingForAnswer;
  ui.finish.disabled = !live;
  ui.voice.hidden = mode !== "voice" || !(phase === "interview" || phase === "connecting");
  ui.assessing.hidden = phase !== "assessing";
}

// --- The transcript, one line per item id.

function line(id, role, previousId) {
  let li = lines.get(id);
  if (li) return li;
  li = document.createElement("li");
  li.className = `turn ${role}`;
  li.dataset.itemId = id;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Interviewer";
  const text = document.createElement("p");
  text.className = "text";
  li.append(who, text);
  const previous = previousId === null ? "top" : previousId && lines.get(previousId);
  if (previous === "top") ui.transcript.prepend(li);
  else if (previous) previous.after(li);
  else ui.transcript.append(li);
  lines.set(id, li);
  return li;
}

function textOf(li) {
  return li.querySelector(".text");
}

// The page follows the conversation while the candidate is at the bottom
// of it (and stays put while they scroll back to read).
const scroller = document.scrollingElement || document.documentElement;
let atBottom = true;
window.addEventListener("scroll", () => {
  atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}, { passive: true });

function follow() {
  // The very bottom: the newest line sits just above the answer box.
  if (atBottom) window.scrollTo(0, scroller.scrollHeight);
}

function setLineText(id, role, text, previousId) {
  const li = line(id, role, previousId);
  if (text) {
    textOf(li).textContent = text;
    li.classList.remove("pending");
  } else if (!textOf(li).textContent) {
    li.classList.add("pending");
  }
  follow();
}

function appendLineText(id, role, delta) {
  const li = line(id, role);
  li.classList.remove("pending");
  textOf(li).textContent += delta;
  follow();
}

function itemText(item) {
  return (item.content || [])
    .map((c) => c.text ?? c.transcript ?? "")
    .filter((t) => t)
    .join("\n");
}

function onItem(item, previousId) {
  if (!item || item.type !== "message" || (item.role !== "user" && item.role !== "assistant")) return;
  const text = itemText(item);
  setLineText(item.id, item.role, text, previousId);
  if (item.role === "user" && waitingForAnswer && text) {
    waitingForAnswer = false;
    pendingAnswer = null;
    updateControls();
  }
}

// An answer sent just before the connection dropped may not have been
// saved: if the replayed conversation does not have it, it goes back in
// the box.
function restoreLostAnswer() {
  if (!pendingAnswer) return;
  const text = pendingAnswer.text;
  pendingAnswer = null;
  const saved = [...lines.values()].some((li) => li.classList.contains("user") && textOf(li).textContent === text);
  if (saved || ui.answer.value) return;
  ui.answer.value = text;
  say("Reconnected. Your last answer did not reach the interviewer; it is back in the box, send it again.");
}

function clearTranscript() {
  ui.transcript.replaceChildren();
  lines.clear();
}

// --- The connection.

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  opened = false;
  if (phase === "start") setPhase("connecting");
  const key = invite || resumeToken;
  const protocols = ["realtime"];
  if (key) protocols.push(`openai-insecure-api-key.${key}`);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  let socket;
  try {
    socket = new WebSocket(`${scheme}//${location.host}/v1/realtime`, protocols);
  } catch {
    // A token that cannot be a subprotocol: no invite of ours.
    cannotConnect();
    return;
  }
  ws = socket;
  socket.addEventListener("message", (m) => {
    if (socket !== ws) return;
    let event;
    try {
      event = JSON.parse(m.data);
    } catch {
      return;
    }
    onEvent(event);
  });
  socket.addEventListener("close", (c) => {
    if (socket !== ws) return;
    onClose(c);
  });
}

function send(event) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(event));
  return true;
}

function nextEventId() {
  eventSeq += 1;
  return `page_${eventSeq}`;
}

function onClose(c) {
  const wasOpen = opened;
  opened = false;
  hooks.connected = false;
  hooks.closes.push({ code: c.code, reason: c.reason, opened: wasOpen });
  ws = null;
  responding = false;
  waitingForAnswer = false;
  // What was received still plays out (the closing remark outlives the
  // connection); another window taking over is the exception.
  if (voice && c.code === 4000) voice.interrupt();
  updateControls();
  if (phase === "done" || phase === "ended") {
    if (c.code === 1000 && phase === "done") say("The interview is complete. You can close this page.");
    forget();
    return;
  }
  switch (c.code) {
    case 1000:
      forget();
      showEnd("The interview is over", "Thank you for your time. The interview has ended.");
      return;
    case 1011:
      setPhase("ended");
      showEnd("Something went wrong on our side",
        "The interview could not go on: " + (c.reason || "a server error") +
        ". What you said so far is kept. Please tell the person who invited you.");
      return;
    case 4000:
      setPhase("ended");
      showEnd("The interview continues elsewhere",
        "This interview was opened in another window or on another device, and continues there.",
        "Continue here instead", () => { hideEnd(); setPhase("connecting"); reconnect(); });
      return;
    case 1012:
      say("The service is restarting, reconnecting…");
      scheduleReconnect(true);
      return;
    default:
      if (!everConnected) {
        cannotConnect();
        return;
      }
      say(wasOpen ? "The connection was lost, reconnecting…" : "Still reconnecting…");
      scheduleReconnect(false);
  }
}

function cannotConnect() {
  setPhase("ended");
  ui.intro.hidden = true;
  showEnd("Could not connect",
    "Could not connect to the interview. The invite may be invalid, already used, or expired, " +
    "or the service may be unreachable. Check the link you were sent, or try again in a moment.",
    "Try again", () => { hideEnd(); setPhase("connecting"); connect(); });
}

function scheduleReconnect(restart) {
  retries += 1;
  if (retries > MAX_RETRIES) {
    showEnd("Could not reconnect",
      "The connection to the interview was lost and could not be restored. Your answers so far are saved.",
      "Try again", () => { hideEnd(); retries = 0; reconnect(); });
    return;
  }
  const base = Math.min(10000, (restart ? 300 : 500) * 2 ** (retries - 1));
  const delay = base * (0.8 + 0.4 * Math.random());
  retryTimer = setTimeout(reconnect, delay);
}

function reconnect() {
  hooks.reconnects += 1;
  connect();
}

// Back online: no need to wait for the next try.
window.addEventListener("online", () => {
  if (retryTimer) reconnect();
});

function showEnd(title, text, action, onAction) {
  ui.endTitle.textContent = title;
  ui.endText.textContent = text;
  ui.endAction.hidden = !action;
  if (action) {
    ui.endAction.textContent = action;
    ui.endAction.onclick = onAction;
  }
  ui.end.hidden = false;
  say(title + ".");
  ui.end.focus();
}

function hideEnd() {
  ui.end.hidden = true;
}

// --- Server events.

function onEvent(e) {
  switch (e.type) {
    case "session.created":
      onSessionCreated(e.session || {});
      break;
    case "conversation.item.added":
    case "conversation.item.done":
      onItem(e.item, e.previous_item_id);
      break;
    case "response.created":
      responding = true;
      ui.transcript.setAttribute("aria-busy", "true");
      if (e.response?.metadata?.interview_phase === "closing") setPhase("closing");
      updateControls();
      break;
    case "response.output_text.delta":
    case "response.output_audio_transcript.delta":
      if (!interrupted.has(e.item_id)) appendLineText(e.item_id, "assistant", e.delta);
      break;
    case "response.output_text.done":
      setLineText(e.item_id, "assistant", e.text);
      break;
    case "response.output_audio_transcript.done":
      if (!interrupted.has(e.item_id)) setLineText(e.item_id, "assistant", e.transcript);
      break;
    case "response.output_audio.delta":
      onAudio(e);
      break;
    case "response.output_audio.done":
      if (voice) voice.end(e.item_id);
      break;
    case "response.done":
      responding = false;
      waitingForAnswer = false;
      ui.transcript.setAttribute("aria-busy", "false");
      if (mode === "text" && phase === "interview" && e.response?.status === "completed") {
        say("Your turn: type your answer below.");
        if (document.activeElement !== ui.answer) ui.answer.focus({ preventScroll: true });
      }
      updateControls();
      break;
    case "input_audio_buffer.speech_started":
      if (phase === "interview") say("Listening…");
      onSpeechStarted();
      break;
    case "input_audio_buffer.committed":
      committedAt = performance.now();
      awaitingReplyAudio = true;
      setLineText(e.item_id, "user", "", e.previous_item_id);
      break;
    case "conversation.item.input_audio_transcription.delta":
      appendLineText(e.item_id, "user", e.delta);
      break;
    case "conversation.item.input_audio_transcription.completed":
      setLineText(e.item_id, "user", e.transcript || "(inaudible)");
      break;
    case "conversation.item.input_audio_transcription.failed":
      setLineText(e.item_id, "user", "(your spoken answer; it could not be transcribed)");
      break;
    case "interview.resumed":
      say("Reconnected. The interview continues.");
      restoreLostAnswer();
      break;
    case "interview.upstream.reconnected":
      say("The interviewer's connection was restored; the interview continues.");
      break;
    case "interview.assessment.started":
      setPhase("assessing");
      startElapsed(0);
      say("The interview is over. Preparing your assessment…");
      ui.assessing.scrollIntoView({ block: "nearest" });
      break;
    case "interview.keepalive":
      if (phase !== "assessing") setPhase("assessing");
      startElapsed(e.elapsed_ms || 0);
      break;
    case "interview.assessment.completed":
      showReport(e);
      break;
    case "interview.assessment.failed":
      stopElapsed();
      setPhase("done");
      showEnd("Your interview is recorded",
        "The assessment could not be completed this time (" + (e.reason || "unknown reason") +
        "). Your answers are saved; the team will be in touch.");
      break;
    case "error":
      onError(e.error || {});
      break;
    default:
      break;
  }
}

function onSessionCreated(s) {
  const resumed = !!sessionId && s.id === sessionId;
  if (sessionId && s.id && s.id !== sessionId && lines.size > 0) {
    clearTranscript();
    say("Your previous interview could not be continued; this is a new one.");
  }
  opened = true;
  everConnected = true;
  retries = 0;
  hooks.connected = true;
  sessionId = s.id || null;
  hooks.sessionId = sessionId;
  if (s.resume_token) resumeToken = s.resume_token;
  remember();
  hooks.model = s.model || null;
  mode = s.model && s.model !== SCRIPTED_MODEL ? "voice" : "text";
  hooks.mode = mode;
  ui.intro.hidden = true;
  hideEnd();
  if (phase === "connecting" || phase === "start") setPhase("interview");
  if (!resumed) say(mode === "voice"
    ? "Connected. The interviewer will speak first; answer out loud, or type below."
    : "Connected. The interviewer's questions appear below; type your answers.");
  if (mode === "voice") {
    if (!voice) setMic("unsupported");
    else if (!voice.micOn && !["starting", "denied", "absent", "error"].includes(micState)) startMicrophone();
  } else if (voice) {
    voice.close();
    voice = null;
  }
  updateControls();
}

function onError(err) {
  hooks.errors.push(err.code || err.type || "error");
  const quiet = ["response_cancel_not_active", "interview_over", "rate_limited",
    "conversation_already_has_active_response", "input_audio_buffer_commit_empty"];
  if (quiet.includes(err.code)) return;
  const mine = pendingAnswer && err.event_id && err.event_id.startsWith(pendingAnswer.eventId);
  if (mine) {
    waitingForAnswer = false;
    if (!ui.answer.value) ui.answer.value = pendingAnswer.text;
    pendingAnswer = null;
    updateControls();
  }
  switch (err.code) {
    case "empty_message":
      say("Please write an answer first.");
      break;
    case "transcript_write_failed":
      say("Your answer could not be saved. Please send it again.");
      break;
    case "upstream_not_ready":
      say("The interviewer is still connecting. Please try again in a moment.");
      break;
    case "upstream_unavailable":
      say("The interviewer is unavailable. The interview ends here; what you said so far will be assessed.");
      break;
    default:
      say(err.message || "Something went wrong.");
  }
}

// --- Voice.

async function startMicrophone() {
  if (!voice) return;
  setMic("starting");
  try {
    await voice.startMic();
    hooks.outputLatencyMs = voice.latencyMs;
    setMic(voice.muted ? "muted" : "on");
  } catch (err) {
    const name = err && err.name;
    if (name === "NotAllowedError" || name === "SecurityError") setMic("denied");
    else if (name === "NotFoundError" || name === "OverconstrainedError") setMic("absent");
    else setMic("error");
  }
}

function stopMicrophone() {
  if (voice && voice.micOn) {
    voice.stopMic();
    setMic("off");
  }
}

function setMic(state) {
  micState = state;
  hooks.mic = state;
  const notes = {
    starting: "Starting the microphone…",
    on: "Microphone on: just speak. You can also type your answers below.",
    muted: "Microphone muted. Unmute it to speak, or type your answers below.",
    off: "",
    denied: "Microphone access was refused, so the interview continues in writing: type your answers below. " +
      "To speak instead, allow the microphone for this site in your browser, then choose “Try the microphone again”.",
    absent: "No microphone was found, so the interview continues in writing: type your answers below. " +
      "You can connect one and choose “Try the microphone again”.",
    unsupported: "This browser cannot use the microphone here, so the interview continues in writing: type your answers below.",
    error: "The microphone could not be started, so the interview continues in writing: type your answers below.",
  };
  ui.micNote.textContent = notes[state] || "";
  const failed = ["denied", "absent", "error"].includes(state);
  ui.micRetry.hidden = !failed;
  ui.micNote.classList.toggle("warning", failed || state === "unsupported");
  ui.micRow.hidden = !(state === "on" || state === "muted");
  ui.level.value = 0;
  if ((failed || state === "unsupported") && mode === "voice") say(ui.micNote.textContent);
}

function onChunk(b64, rms) {
  ui.level.value = Math.max(0, Math.min(1, (20 * Math.log10(rms + 1e-9) + 60) / 60));
  if (!opened || phase !== "interview") return;
  if (!send({ type: "input_audio_buffer.append", audio: b64 })) return;
  hooks.chunksSent += 1;
  hooks.bytesSent += (b64.length * 3) / 4;
  hooks.lastChunkAt = performance.now();
  if (hooks.firstChunkAt === null) hooks.firstChunkAt = hooks.lastChunkAt;
  if (rms >= VOICED_RMS && !voice.muted) {
    hooks.voicedChunksSent += 1;
    lastVoicedAt = performance.now();
  }
}

function onAudio(e) {
  if (!voice || interrupted.has(e.item_id)) return;
  hooks.samplesReceived += voice.play(e.item_id, e.delta);
}

function onStarted(m) {
  hooks.audioItems += 1;
  if (phase === "interview") say("The interviewer is speaking…");
  if (awaitingReplyAudio && lastVoicedAt !== null) {
    // The round trip of a spoken turn: from the last voiced chunk sent to
    // the reply's first sample out (plus the device's output latency).
    const now = performance.now();
    hooks.roundTrips.push({
      item_id: m.id,
      speech_end_to_play_ms: Math.round(now - lastVoicedAt + voice.latencyMs),
      committed_to_play_ms: committedAt === null ? null : Math.round(now - committedAt + voice.latencyMs),
    });
  }
  awaitingReplyAudio = false;
}

function onDrained(m) {
  hooks.samplesPlayed = m.total;
  // The interviewer has finished speaking (as heard, not as sent).
  if (phase === "interview" && !responding) say("Your turn: answer out loud, or type below.");
}

function onProgress(m) {
  hooks.samplesPlayed = m.total;
  hooks.underruns = m.underruns;
}

async function onSpeechStarted() {
  // The candidate talks over the interviewer: stop at once, and tell the
  // server how much was heard, as the Realtime clients do.
  if (!voice) return;
  const heard = await voice.interrupt();
  hooks.samplesPlayed = heard.total;
  if (!heard.id || interrupted.has(heard.id)) return;
  interrupted.add(heard.id);
  const audioEndMs = Math.floor((heard.played * 1000) / RATE);
  const truncate = {
    type: "conversation.item.truncate", event_id: nextEventId(),
    item_id: heard.id, content_index: 0, audio_end_ms: audioEndMs,
  };
  if (send(truncate)) {
    hooks.truncates += 1;
    hooks.lastTruncate = { item_id: heard.id, audio_end_ms: audioEndMs, at: Date.now() };
  }
  lines.get(heard.id)?.classList.add("interrupted");
}

// --- The assessment and the report.

function startElapsed(ms) {
  elapsedBase = { ms, at: performance.now() };
  renderElapsed();
  if (!elapsedTimer) elapsedTimer = setInterval(renderElapsed, 1000);
}

function renderElapsed() {
  if (!elapsedBase) return;
  const s = Math.floor((elapsedBase.ms + performance.now() - elapsedBase.at) / 1000);
  ui.elapsed.textContent = s < 1 ? "Just started." : `${s} s so far.`;
}

function stopElapsed() {
  clearInterval(elapsedTimer);
  elapsedTimer = null;
  elapsedBase = null;
}

const RECOMMENDATION = {
  strong_yes: "Strong yes", yes: "Yes", lean_no: "Leaning no", no: "No",
};

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function showReport(e) {
  stopElapsed();
  setPhase("done");
  const r = e.report;
  const body = [];
  if (r && typeof r.summary === "string") body.push(el("p", r.summary, "summary"));
  else body.push(el("p", "Your interview is complete and has been assessed. The team will be in touch about next steps.", "summary"));
  if (e.shared === "full" && r && Array.isArray(r.questions)) {
    const facts = el("dl", undefined, "facts");
    facts.append(el("dt", "Overall score"), el("dd", `${r.overall_score} / 100`));
    if (r.recommendation) facts.append(el("dt", "Recommendation"), el("dd", RECOMMENDATION[r.recommendation] || r.recommendation));
    body.push(facts);
    const list = el("ol", undefined, "questions");
    for (const q of r.questions) {
      const li = el("li");
      li.append(el("h3", q.question), el("p", `Score: ${q.score} / 100`, "score"));
      if (q.reasons && q.reasons.length) {
        const reasons = el("ul");
        for (const reason of q.reasons) reasons.append(el("li", reason));
        li.append(reasons);
      }
      list.append(li);
    }
    body.push(list);
  }
  ui.reportBody.replaceChildren(...body);
  ui.report.hidden = false;
  say("Your assessment is ready.");
  ui.report.focus();
  forget();
}

// --- The page's controls.

function start() {
  ui.start.disabled = true;
  say("Connecting…");
  if (voiceSupported()) {
    // Made in the click, so that the interviewer may be heard; closed
    // again if the interview turns out to be in text.
    const v = new Voice({ chunk: onChunk, started: onStarted, progress: onProgress, drained: onDrained });
    voice = v;
    v.open().catch(() => {
      if (voice !== v) return;
      v.close();
      voice = null;
      setMic("unsupported");
    });
  }
  connect();
}

ui.start.addEventListener("click", start);
if (sessionId) {
  ui.start.textContent = "Continue the interview";
}

ui.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.answer.value.trim();
  if (!text) {
    say("Please write an answer first.");
    return;
  }
  if (ui.send.disabled) return;
  const eventId = nextEventId();
  const sent = send({
    type: "conversation.item.create", event_id: eventId,
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  }) && send({ type: "response.create", event_id: `${eventId}_response` });
  if (!sent) {
    say("Not connected right now; your answer is kept. Send it again once reconnected.");
    return;
  }
  pendingAnswer = { eventId, text };
  waitingForAnswer = true;
  ui.answer.value = "";
  say("Answer sent.");
  updateControls();
});

ui.answer.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    ui.form.requestSubmit();
  }
});

ui.finish.addEventListener("click", () => {
  if (typeof ui.confirm.showModal === "function") ui.confirm.showModal();
  else finishNow();
});
ui.confirmYes.addEventListener("click", () => {
  ui.confirm.close();
  finishNow();
});
ui.confirmNo.addEventListener("click", () => ui.confirm.close());

function finishNow() {
  if (send({ type: "interview.finish", event_id: nextEventId() })) say("Ending the interview…");
}

ui.mute.addEventListener("click", () => {
  if (!voice) return;
  const muted = !voice.muted;
  voice.setMuted(muted);
  ui.mute.setAttribute("aria-pressed", String(muted));
  ui.mute.textContent = muted ? "Unmute microphone" : "Mute microphone";
  setMic(muted ? "muted" : "on");
});

ui.micRetry.addEventListener("click", () => {
  if (!voice) return;
  startMicrophone();
});

setPhase("start");
