#!/usr/bin/env python3
"""A mock of the OpenAI Responses API (POST /v1/responses), for the `openai` assessor tests.

Usage: mock_responses.py --control-dir DIR [--expect-key KEY]

Prints `listening on 127.0.0.1:PORT` when ready. Each request is recorded as
DIR/request-N.json (headers without the key's value, and the JSON body) and
answered by the next line of DIR/scenario (consumed; the last line repeats
when only one is left; `ok` when there is no file):

  ok         200, an assessment built from the request's rubric (score 70 for every
             question, the first four words of the candidate's first answer as evidence,
             and one paraphrased quote that the daemon must drop)
  malformed  200, but the output_text is not JSON
  bad_shape  200, JSON that breaks the report format (a score of 140)
  429        429 with Retry-After: 1
  500        500
  401        401 invalid_api_key
  hang       accept the request and never answer

SIGTERM/SIGINT: exits at once.
"""

import argparse
import http.server
import json
import os
import signal
import sys
import threading
import time


def build_assessment(body):
    text = body["input"][0]["content"][0]["text"]
    data = json.loads(text)
    first_answer = next(
        (i["text"] for i in data.get("transcript") or [] if i.get("role") == "user"), "")
    quote = " ".join(first_answer.split()[:4])
    questions = []
    for q in data["rubric"]:
        evidence = [quote, "words the candidate never said"] if quote and not questions else []
        questions.append({
            "question_id": q["question_id"], "question": q["question"], "score": 70,
            "reasons": ["mock assessment"], "evidence": evidence,
        })
    return {"summary": "A mock assessment of your interview.", "questions": questions,
            "overall_score": 70, "recommendation": "yes"}


def response_with(text):
    return {"id": "resp_mock", "object": "response", "status": "completed", "model": "gpt-5-mini",
            "output": [{"type": "reasoning", "id": "rs_1", "summary": []},
                       {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}]}


class State:
    lock = threading.Lock()
    count = 0


def next_scenario(ctl):
    path = os.path.join(ctl, "scenario")
    with State.lock:
        State.count += 1
        n = State.count
        if not os.path.exists(path):
            return n, "ok"
        lines = [l.strip() for l in open(path) if l.strip()]
        if not lines:
            return n, "ok"
        if len(lines) > 1:
            with open(path, "w") as f:
                f.write("\n".join(lines[1:]) + "\n")
        return n, lines[0]


def make_handler(ctl, expect_key):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, obj, extra=()):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            n, scenario = next_scenario(ctl)
            auth = self.headers.get("Authorization") or ""
            key_ok = auth.startswith("Bearer ") and (not expect_key or auth[7:] == expect_key)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            record = {"path": self.path, "scenario": scenario, "key_ok": key_ok,
                      "headers": {k: v for k, v in self.headers.items() if k.lower() != "authorization"},
                      "body": body}
            with open(os.path.join(ctl, f"request-{n}.json"), "w") as f:
                json.dump(record, f)
            if self.path != "/v1/responses":
                return self.answer(404, {"error": {"message": "not found", "code": None}})
            if not key_ok or scenario == "401":
                return self.answer(401, {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}})
            if scenario == "hang":
                time.sleep(3600)
                return
            if scenario == "429":
                return self.answer(429, {"error": {"message": "rate limited", "code": "rate_limit_exceeded"}},
                                   [("Retry-After", "1")])
            if scenario == "500":
                return self.answer(500, {"error": {"message": "server error", "code": None}})
            if scenario == "malformed":
                return self.answer(200, response_with("I think the candidate did well."))
            assessment = build_assessment(body)
            if scenario == "bad_shape":
                assessment["questions"][0]["score"] = 140
            return self.answer(200, response_with(json.dumps(assessment)))

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--control-dir", required=True)
    ap.add_argument("--expect-key")
    args = ap.parse_args()
    os.makedirs(args.control_dir, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args.control_dir, args.expect_key))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
