#!/usr/bin/env python3
"""Drives the interview page (web/) in headless Chromium for tests/browser.rs.

Usage: drive.py SCENARIO --url URL --artifacts DIR [--sync DIR] [--bad-url URL]

Scenarios: text, voice, bargein, restart, refused, absent, clean (see each
function). The page is used as a person would use it: buttons, the keyboard
and the text box, and what the page shows; window.__interviewd (the page's
test hooks) is read for what a person hears rather than sees (audio played,
truncations). On success the last line of stdout is `RESULT {json}` with
what the test asserts on; on failure it exits 1 with the reason, the page's
state and a screenshot (SCENARIO-failure.png) in the artifacts directory.

Chromium and chromedriver are Debian's (/usr/bin; tests/browser/setup.sh).
The fake microphone plays a WAV file made here with espeak-ng and sox.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SPEECH = "I built a billing service with a team of three."

# Answers long enough (over every question's min_words) that the scripted
# interviewer asks no follow-up, each mentioning its question's keywords.
ANSWERS = [
    "I built a billing export service with a team of three engineers. I designed the schema, "
    "wrote most of the ingestion code and was responsible for the rollout to our largest users. "
    "We shipped it in six weeks, and my main decision was to make every export idempotent so that "
    "retries were always safe for the users and for the team on call.",
    "First I would read the logs and the metrics around each failure and try to reproduce it with "
    "the same inputs. Then I would form a hypothesis, add a trace or more monitoring where the "
    "evidence is thin, write a test that fails, fix it, and keep a rollback ready while I watch "
    "the monitoring for a few days to see that it stays fixed.",
    "A hash map gives constant time lookup when I only need exact keys and memory is not tight. "
    "A sorted tree keeps keys ordered, so range queries and ordered iteration are cheap, with "
    "logarithmic complexity for every operation.",
    "A race condition is when the result depends on the order in which threads touch shared state. "
    "Two threads incrementing one counter without a lock can lose updates. I would prevent it with "
    "a mutex, an atomic operation, or by giving the state a single owner so that the order is fixed.",
    "I look at correctness first, then tests, readability and the design as a whole. I keep my "
    "feedback specific and kind, ask questions rather than give orders, and say what is good too, "
    "so that the feedback lands well and the review stays a conversation.",
    "Recently I learned Rust async. I read the documentation and a book, did small practice "
    "projects, made plenty of mistakes and fixed them, and then rewrote a small service at work.",
]

STATE_JS = """
const h = window.__interviewd ? JSON.parse(JSON.stringify(window.__interviewd)) : null;
const shown = (id) => { const e = document.getElementById(id); return !!e && !e.hidden && e.offsetParent !== null; };
return {
  hooks: h,
  status: document.getElementById('status')?.textContent || '',
  lines: [...document.querySelectorAll('#transcript > li')].map((li) => ({
    id: li.dataset.itemId, role: li.classList.contains('user') ? 'user' : 'assistant',
    text: li.querySelector('.text').textContent, pending: li.classList.contains('pending'),
    interrupted: li.classList.contains('interrupted')})),
  form: shown('answer-form'),
  send_enabled: shown('answer-form') && !document.getElementById('send').disabled,
  voice: shown('voice'),
  mic_note: document.getElementById('mic-note')?.textContent || '',
  assessing: shown('assessing'),
  elapsed: document.getElementById('elapsed')?.textContent || '',
  report: shown('report') ? document.getElementById('report').innerText : null,
  end: shown('end') ? document.getElementById('end').innerText : null,
  step: document.querySelector('#steps [aria-current=step]')?.dataset.step || null,
};
"""


class Failure(Exception):
    pass


class Page:
    """One headless Chromium with the interview page; closed by close()."""

    def __init__(self, name, artifacts, mic_file=None, mic="allow", size=(900, 1000)):
        self.name = name
        self.artifacts = artifacts
        for old in os.listdir(artifacts):
            if old.startswith(f"{name}-") and old.endswith(".png"):
                os.remove(os.path.join(artifacts, old))
        self.profile = tempfile.mkdtemp(prefix="interviewd-chromium-")
        self.logs = []
        self.screenshots = []
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        flags = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={self.profile}", f"--window-size={size[0]},{size[1]}",
        ]
        # mic: "allow" (the fake microphone, permission granted), "deny"
        # (a microphone, permission prompts denied) or "none" (no device).
        if mic != "none":
            flags.append("--use-fake-device-for-media-stream")
        if mic == "deny":
            flags.append("--deny-permission-prompts")
        else:
            flags.append("--use-fake-ui-for-media-stream")
        if mic_file:
            # Played once, then silence.
            flags.append(f"--use-file-for-fake-audio-capture={mic_file}%noloop")
        for f in flags:
            opts.add_argument(f)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        started = time.monotonic()
        self.d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.launch_s = time.monotonic() - started
        self.d.set_script_timeout(10)

    def open(self, url):
        # From a blank page, as a link opened afresh (not a same-document
        # fragment change).
        self.d.get("about:blank")
        self.d.get(url)
        self.wait("the page's script ran", lambda s: s["hooks"] is not None, 10)

    def state(self):
        return self.d.execute_script(STATE_JS)

    def hooks(self):
        return self.state()["hooks"]

    def wait(self, what, cond, timeout):
        """Polls the page state until cond(state) is truthy; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.state()
            got = cond(s)
            if got:
                return got if got is not True else s
            if time.monotonic() > deadline:
                raise Failure(f"{what}: not within {timeout} s")
            time.sleep(0.05)

    def click(self, element_id):
        self.d.find_element(By.ID, element_id).click()

    def start_with_keyboard(self):
        """Tabs to the start button (the first control) and presses Enter."""
        body = self.d.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        active = self.d.switch_to.active_element
        if active.get_attribute("id") != "start":
            raise Failure(f"Tab reached {active.get_attribute('id')!r}, not the start button")
        active.send_keys(Keys.ENTER)

    def type_answer(self, text, press_enter=True):
        box = self.d.find_element(By.ID, "answer")
        box.clear()
        box.send_keys(text)
        if press_enter:
            box.send_keys(Keys.ENTER)
        else:
            self.click("send")

    def shot(self, label):
        path = os.path.join(self.artifacts, f"{self.name}-{label}.png")
        self.d.save_screenshot(path)
        self.screenshots.append(path)
        return path

    def console(self):
        """Browser log entries so far (the log is drained on each read)."""
        try:
            self.logs.extend(self.d.get_log("browser"))
        except WebDriverException:
            pass
        return self.logs

    def close(self):
        try:
            self.d.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def make_speech(path, layout):
    """A 48 kHz mono 16-bit WAV: `layout` is a list of seconds of silence
    (numbers) and "speech" (SPEECH spoken by espeak-ng)."""
    work = tempfile.mkdtemp(prefix="interviewd-speech-")
    try:
        raw = os.path.join(work, "raw.wav")
        subprocess.run(["espeak-ng", "-w", raw, SPEECH], check=True, capture_output=True)
        speech = os.path.join(work, "speech.wav")
        subprocess.run(["sox", raw, "-r", "48000", "-c", "1", "-b", "16", speech, "norm", "-3"],
                       check=True, capture_output=True)
        parts = []
        for i, part in enumerate(layout):
            if part == "speech":
                parts.append(speech)
            else:
                p = os.path.join(work, f"silence{i}.wav")
                subprocess.run(["sox", "-n", "-r", "48000", "-c", "1", "-b", "16", p, "trim", "0", str(part)],
                               check=True, capture_output=True)
                parts.append(p)
        subprocess.run(["sox", *parts, path], check=True, capture_output=True)
        out = subprocess.run(["soxi", "-D", speech], check=True, capture_output=True, text=True)
        return float(out.stdout.strip())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def result(page, **facts):
    s = page.state()
    facts.update(
        hooks=s["hooks"], lines=s["lines"], status=s["status"], report=s["report"], end=s["end"],
        step=s["step"], console=page.console(), screenshots=page.screenshots,
        launch_s=round(page.launch_s, 2),
    )
    return facts


# ---------------------------------------------------------------------------
# Scenarios.
# ---------------------------------------------------------------------------


def scenario_text(args, page):
    """A whole text interview with the scripted engine, through the page
    alone: a wrong invite first (the could-not-connect screen), then the
    real one; started from the keyboard; every answer typed, sent with
    Enter or the button; the assessment's progress; the full report."""
    if args.bad_url:
        page.open(args.bad_url)
        page.start_with_keyboard()
        s = page.wait("the could-not-connect screen", lambda s: s["end"] and s, 15)
        bad_end = s["end"]
        page.shot("bad-invite")
        # Chromium may report the refused handshake: not the page's doing.
        page.console()
        page.logs.clear()
    page.open(args.url)
    page.start_with_keyboard()
    answered = 0
    progress_seen = None
    takeover = None
    for n in range(20):
        s = page.wait("the interviewer's question, or the end",
                      lambda s: s if (s["send_enabled"] or s["assessing"] or s["report"]) else None, 20)
        if s["assessing"] or s["report"]:
            break
        if answered == 2 and takeover is None:
            takeover = take_over_and_back(args, page)
        page.type_answer(ANSWERS[answered % len(ANSWERS)], press_enter=(n % 2 == 0))
        answered += 1
        page.wait("the answer on screen", lambda s: sum(1 for l in s["lines"] if l["role"] == "user") >= answered, 10)
        if answered == 3:
            page.shot("mid-interview")
    s = page.wait("the assessment's progress",
                  lambda s: s if (s["assessing"] and "so far" in s["elapsed"]) or s["report"] else None, 20)
    if s["assessing"]:
        progress_seen = s["elapsed"]
        page.shot("assessing")
    page.wait("the report", lambda s: s["report"], 30)
    page.wait("the close", lambda s: s["hooks"]["closes"], 10)
    page.shot("report")
    return result(page, answered=answered, progress=progress_seen, takeover=takeover,
                  bad_end=bad_end if args.bad_url else None)


def take_over_and_back(args, page):
    """The same invite opened in a second tab takes the interview over
    (the first gets close 4000 and says so); "Continue here instead" in the
    first takes it back (the second then says so)."""
    first = page.d.current_window_handle
    lines_before = len(page.state()["lines"])
    page.d.switch_to.new_window("tab")
    second = page.d.current_window_handle
    page.open(args.url)
    page.click("start")
    s = page.wait("the interview in the second tab",
                  lambda s: s if s["send_enabled"] and len(s["lines"]) > lines_before else None, 20)
    second_lines = len(s["lines"])
    page.shot("second-tab")
    page.d.switch_to.window(first)
    s = page.wait("the first tab told", lambda s: s if s["end"] else None, 10)
    first_end = s["end"]
    first_closes = s["hooks"]["closes"]
    page.shot("taken-over")
    page.click("end-action")
    page.wait("the interview back in the first tab",
              lambda s: s["send_enabled"] and s["hooks"]["connected"] and not s["end"], 20)
    page.d.switch_to.window(second)
    s = page.wait("the second tab told", lambda s: s if s["end"] else None, 10)
    second_end = s["end"]
    page.d.close()
    page.d.switch_to.window(first)
    return {"first_end": first_end, "first_closes": first_closes, "second_end": second_end,
            "second_lines": second_lines, "lines_before": lines_before}


def scenario_voice(args, page):
    """A spoken interview through the relay: the fake microphone speaks two
    answers; the interviewer's audio is played; both transcripts and the
    report show."""
    page.open(args.url)
    page.click("start")
    page.wait("the microphone on", lambda s: s["hooks"]["mic"] == "on", 15)
    page.wait("the first answer transcribed",
              lambda s: any(l["role"] == "user" and "candidate answer" in l["text"] for l in s["lines"]), 30)
    page.shot("speaking")
    page.wait("the report", lambda s: s["report"], 40)
    page.wait("the close", lambda s: s["hooks"]["closes"], 10)
    page.wait("the interviewer's last words played",
              lambda s: s["hooks"]["samplesPlayed"] >= s["hooks"]["samplesReceived"], 10)
    page.shot("report")
    return result(page)


def scenario_bargein(args, page):
    """The candidate speaks while the interviewer's (long) greeting plays:
    playback stops at once and conversation.item.truncate says how much was
    heard; the candidate's turn then gets its reply."""
    page.open(args.url)
    page.click("start")
    page.wait("the greeting playing", lambda s: s["hooks"]["samplesPlayed"] > 0, 20)
    s = page.wait("a truncation", lambda s: s if s["hooks"]["lastTruncate"] else None, 20)
    truncate = s["hooks"]["lastTruncate"]
    played_at_truncate = s["hooks"]["samplesPlayed"]
    items_at_truncate = s["hooks"]["audioItems"]
    page.shot("interrupted")
    # Playback stays stopped until the reply: nothing more of the greeting.
    time.sleep(0.4)
    s = page.state()
    if s["hooks"]["audioItems"] == items_at_truncate:
        grew = s["hooks"]["samplesPlayed"] - played_at_truncate
        if grew > 0:
            raise Failure(f"playback went on after the truncation: {grew} more samples")
    page.wait("the reply to the interrupting turn playing",
              lambda s: s["hooks"]["audioItems"] > items_at_truncate, 20)
    page.shot("reply")
    # Mute, from the keyboard: the button says so, and silence still flows
    # (so that the turn detection can end a turn).
    mute = page.d.find_element(By.ID, "mute")
    mute.send_keys(Keys.SPACE)
    s = page.wait("muted", lambda s: s if s["hooks"]["mic"] == "muted" else None, 5)
    chunks = s["hooks"]["chunksSent"]
    page.wait("chunks while muted", lambda s: s["hooks"]["chunksSent"] > chunks + 5, 5)
    muted = {"pressed": mute.get_attribute("aria-pressed"), "label": mute.text, "note": page.state()["mic_note"]}
    page.shot("muted")
    return result(page, truncate=truncate, played_at_truncate=played_at_truncate, muted=muted)


def scenario_restart(args, page):
    """The daemon restarts mid-interview (the test does it when told through
    the sync directory): the page says so, reconnects on its own to the same
    address, resumes without duplicating a line, and the interview finishes."""
    page.open(args.url)
    page.click("start")
    page.wait("the first question", lambda s: s["send_enabled"], 20)
    page.type_answer(ANSWERS[0])
    page.wait("the second question",
              lambda s: s["send_enabled"] and sum(1 for l in s["lines"] if l["role"] == "assistant") >= 2, 20)
    before = page.state()
    with open(os.path.join(args.sync, "ready"), "w") as f:
        f.write(before["hooks"]["sessionId"])
    s = page.wait("the restart on screen", lambda s: s if any(c["code"] == 1012 for c in s["hooks"]["closes"]) else None, 20)
    if "restarting" in s["status"]:
        page.shot("restarting")
    s = page.wait("the interview resumed",
                  lambda s: s if s["hooks"]["connected"] and "Reconnected" in " ".join(s["hooks"]["said"]) else None, 30)
    page.wait("the question asked again", lambda s: s["send_enabled"], 20)
    page.shot("resumed")
    resumed = page.state()
    answered = 1
    for _ in range(20):
        s = page.wait("the next question, or the end",
                      lambda s: s if (s["send_enabled"] or s["assessing"] or s["report"]) else None, 20)
        if s["assessing"] or s["report"]:
            break
        page.type_answer(ANSWERS[answered % len(ANSWERS)])
        answered += 1
        page.wait("the answer on screen", lambda s: sum(1 for l in s["lines"] if l["role"] == "user") >= answered, 10)
    page.wait("the report", lambda s: s["report"], 30)
    page.shot("report")
    return result(page, before=before, resumed=resumed, answered=answered)


def scenario_refused(args, page):
    """The microphone is refused (permission prompts denied): the page says
    so, offers text, and a typed answer gets the interviewer's next turn."""
    page.open(args.url)
    page.click("start")
    s = page.wait("the refusal explained", lambda s: s if s["hooks"]["mic"] == "denied" and s["form"] else None, 20)
    mic_note = s["mic_note"]
    page.wait("the greeting done", lambda s: s["send_enabled"], 20)
    page.type_answer(ANSWERS[0])
    page.wait("the interviewer's next turn",
              lambda s: any(l["role"] == "assistant" and "Question 2" in l["text"] for l in s["lines"]), 20)
    page.shot("text-instead")
    return result(page, mic_note=mic_note)


def scenario_absent(args, page):
    """No microphone at all: the page says so and offers text."""
    page.open(args.url)
    page.click("start")
    s = page.wait("the missing microphone explained",
                  lambda s: s if s["hooks"]["mic"] == "absent" and s["form"] else None, 20)
    page.wait("the greeting done", lambda s: s["send_enabled"], 20)
    page.shot("text-instead")
    return result(page, mic_note=s["mic_note"])


def scenario_clean(args, page):
    """The page loads, starts and takes an answer with no console message
    and no CSP violation; every control has a label; on a phone-sized
    screen nothing overflows sideways."""
    page.open(args.url)
    loaded = page.console()[:]
    checks = page.d.execute_script("""
      const unlabelled = [...document.querySelectorAll('textarea, input, meter, select, progress')]
        .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
        .map((e) => e.id);
      const nameless = [...document.querySelectorAll('button')].filter((b) => !b.textContent.trim()
        && !b.getAttribute('aria-label') && b.id !== 'end-action').map((b) => b.id);
      return {unlabelled, nameless, lang: document.documentElement.lang,
              viewport: !!document.querySelector('meta[name=viewport]')};""")
    page.click("start")
    page.wait("the first question", lambda s: s["send_enabled"], 20)
    page.type_answer(ANSWERS[0])
    page.wait("the second question", lambda s: s["send_enabled"] and len(s["lines"]) >= 3, 20)
    page.d.set_window_size(390, 844)
    time.sleep(0.3)
    overflow = page.d.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    page.shot("phone")
    return result(page, loaded_console=loaded, checks=checks, overflow=overflow)


SCENARIOS = {
    "text": (scenario_text, {}),
    "voice": (scenario_voice, {"speech": [2.0, "speech", 2.5, "speech", 1.0]}),
    "bargein": (scenario_bargein, {"speech": [1.2, "speech", 1.0]}),
    "restart": (scenario_restart, {}),
    "refused": (scenario_refused, {"mic": "deny"}),
    "absent": (scenario_absent, {"mic": "none"}),
    "clean": (scenario_clean, {}),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--url", required=True)
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--sync")
    ap.add_argument("--bad-url")
    args = ap.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    run, opts = SCENARIOS[args.scenario]
    mic_file = None
    tmp = tempfile.mkdtemp(prefix="interviewd-browser-")
    page = None
    try:
        speech_s = None
        if "speech" in opts:
            mic_file = os.path.join(tmp, "speech.wav")
            speech_s = make_speech(mic_file, opts["speech"])
        page = Page(args.scenario, args.artifacts, mic_file=mic_file, mic=opts.get("mic", "allow"))
        started = time.monotonic()
        facts = run(args, page)
        facts["scenario_s"] = round(time.monotonic() - started, 2)
        facts["speech_s"] = speech_s
        print("RESULT " + json.dumps(facts), flush=True)
        return 0
    except Exception as e:  # the reason, the page's state, a screenshot
        print(f"FAILED ({args.scenario}): {type(e).__name__}: {e}", file=sys.stderr)
        if page is not None:
            try:
                page.shot("failure")
                print("page state: " + json.dumps(page.state(), indent=1)[:20000], file=sys.stderr)
                print("console: " + json.dumps(page.console())[:5000], file=sys.stderr)
            except Exception as e2:
                print(f"(no page state: {e2})", file=sys.stderr)
        return 1
    finally:
        if page is not None:
            page.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
