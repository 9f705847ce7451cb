// The interview page: connects to /v1/realtime on this origin and runs a
// text interview (conversation.item.create + response.create per answer).
const status = document.getElementById("status");
const transcript = document.getElementById("transcript");
const form = document.getElementById("answer-form");
const answer = document.getElementById("answer");
const report = document.getElementById("report");

const token = new URLSearchParams(location.hash.slice(1)).get("invite");
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const protocols = ["realtime"];
if (token) protocols.push("openai-insecure-api-key." + token);
const ws = new WebSocket(`${scheme}//${location.host}/v1/realtime`, protocols);
const lines = new Map();

function line(id, role) {
  let li = lines.get(id);
  if (!li) {
    li = document.createElement("li");
    li.className = role;
    transcript.append(li);
    lines.set(id, li);
  }
  return li;
}

ws.addEventListener("open", () => {
  ws.send(JSON.stringify({ type: "session.update", session: { type: "realtime", output_modalities: ["text"] } }));
});
ws.addEventListener("message", (m) => {
  const e = JSON.parse(m.data);
  switch (e.type) {
    case "session.created": status.textContent = "Connected."; break;
    case "response.output_text.delta": line(e.item_id, "assistant").textContent += e.delta; break;
    case "conversation.item.done":
      if (e.item.role === "user") line(e.item.id, "user").textContent = e.item.content.map((c) => c.text).join("\n");
      break;
    case "response.done":
      if (e.response?.metadata?.interview_phase !== "closing") { form.hidden = false; answer.focus(); }
      break;
    case "interview.assessment.started": form.hidden = true; status.textContent = "Preparing your assessment…"; break;
    case "interview.keepalive": status.textContent = `Preparing your assessment… ${Math.round(e.elapsed_ms / 1000)} s`; break;
    case "interview.assessment.completed":
      status.textContent = "Done.";
      report.hidden = false;
      report.textContent = e.report?.summary ?? "Your interview has been assessed.";
      break;
    case "error": status.textContent = e.error.message; break;
  }
});
ws.addEventListener("close", (c) => { if (c.code !== 1000) status.textContent = `Disconnected (${c.code}).`; });

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = answer.value.trim();
  if (!text) return;
  ws.send(JSON.stringify({ type: "conversation.item.create", item: { type: "message", role: "user", content: [{ type: "input_text", text }] } }));
  ws.send(JSON.stringify({ type: "response.create" }));
  answer.value = "";
  form.hidden = true;
});
document.getElementById("finish").addEventListener("click", () => {
  ws.send(JSON.stringify({ type: "interview.finish" }));
  form.hidden = true;
});
