// The interviewer's voice, on the audio thread: a queue of 24 kHz chunks
// (Float32, one per response.output_audio.delta, tagged with their item id)
// played back to back at the context's rate by linear interpolation, so
// that consecutive deltas join without a gap. Counts are in 24 kHz samples.
//
// Messages in:  {type: "push", id, samples}  queue a chunk
//               {type: "end", id}            no more audio for this item
//               {type: "clear", seq}         stop now, drop the queue
// Messages out: {type: "started", id}        an item's first sample is out
//               {type: "progress", id, played, total, queued, underruns}
//               {type: "drained", id, played, total}: an item played to its end
//               {type: "cleared", seq, id, played, total}: what was heard of
//               the item playing (or first queued) when cleared
const IN_RATE = 24000;
// Before starting (and after running dry) wait for this much audio, or
// this long, whichever comes first: a little slack against network jitter.
const PREBUFFER = IN_RATE * 0.06;
const PREBUFFER_WAIT_S = 0.1;
const REPORT_S = 0.05;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = IN_RATE / sampleRate; // input samples per output sample
    this.queue = [];
    this.pos = 0; // read position in queue[0], in input samples
    this.id = null; // the item being played
    this.itemBase = 0; // samples of this item in chunks already finished
    this.done = 0; // samples played of items no longer playing
    this.ended = new Set();
    this.running = false;
    this.waitingSince = null;
    this.underruns = 0;
    this.lastReport = -1;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(m) {
    if (m.type === "push") {
      if (m.samples.length > 0) this.queue.push({ id: m.id, data: m.samples });
    } else if (m.type === "end") {
      this.ended.add(m.id);
      if (this.id === m.id && this.queue.length === 0) this.finishItem(true);
    } else if (m.type === "clear") {
      const id = this.id ?? (this.queue.length ? this.queue[0].id : null);
      const played = this.played();
      this.queue = [];
      this.finishItem(false);
      this.port.postMessage({ type: "cleared", seq: m.seq, id, played, total: this.done });
    }
  }

  played() {
    return this.id === null ? 0 : this.itemBase + Math.floor(this.pos);
  }

  queued() {
    let n = -Math.floor(this.pos);
    for (const c of this.queue) n += c.data.length;
    return Math.max(0, n);
  }

  finishItem(report) {
    if (this.id !== null) {
      const played = this.played();
      this.done += played;
      if (report) this.port.postMessage({ type: "drained", id: this.id, played, total: this.done });
      this.ended.delete(this.id);
    }
    this.id = null;
    this.itemBase = 0;
    this.pos = 0;
    this.running = false;
    this.waitingSince = null;
  }

  // The sample after queue[0][i], for interpolation: the next chunk's
  // first when it continues the same item.
  after(i) {
    const head = this.queue[0].data;
    if (i + 1 < head.length) return head[i + 1];
    const next = this.queue[1];
    if (next && next.id === this.queue[0].id) return next.data[0];
    return head[i];
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let k = 0;
    while (k < out.length) {
      if (this.queue.length === 0) {
        if (this.running) {
          if (this.ended.has(this.id)) this.finishItem(true);
          else this.underruns += 1; // more of this item is on its way
          this.running = false;
          this.waitingSince = null;
        }
        break;
      }
      if (!this.running) {
        if (this.waitingSince === null) this.waitingSince = currentTime;
        const complete = this.ended.has(this.queue[this.queue.length - 1].id);
        if (!complete && this.queued() < PREBUFFER
            && currentTime - this.waitingSince < PREBUFFER_WAIT_S) break;
        this.running = true;
      }
      const head = this.queue[0];
      if (head.id !== this.id) {
        this.finishItem(true);
        this.running = true;
        this.id = head.id;
        this.port.postMessage({ type: "started", id: head.id });
      }
      const i = Math.floor(this.pos);
      const a = head.data[i];
      out[k] = a + (this.after(i) - a) * (this.pos - i);
      k += 1;
      this.pos += this.step;
      if (this.pos >= head.data.length) {
        this.pos -= head.data.length;
        this.itemBase += head.data.length;
        this.queue.shift();
      }
    }
    out.fill(0, k);
    if (currentTime - this.lastReport >= REPORT_S) {
      this.lastReport = currentTime;
      this.port.postMessage({
        type: "progress", id: this.id, played: this.played(), total: this.done + this.played(),
        queued: this.queued(), underruns: this.underruns,
      });
    }
    return true;
  }
}

registerProcessor("interviewd-playback", PlaybackProcessor);
