// Voice for the interview page: the microphone as 24 kHz PCM16 chunks of
// 40 ms (capture-worklet.js), and the interviewer's PCM16 deltas played
// gap-free (playback-worklet.js). Standard Web Audio and Media Capture
// only.

/** Samples per second of the Realtime API's PCM16 audio. */
export const RATE = 24000;

/** Whether this browser can do voice at all. */
export function voiceSupported() {
  return typeof AudioContext === "function"
    && typeof AudioWorkletNode === "function"
    && !!navigator.mediaDevices
    && typeof navigator.mediaDevices.getUserMedia === "function";
}

export function bytesToBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** base64 PCM16 little-endian to Float32 samples. */
export function base64ToSamples(b64) {
  const bin = atob(b64);
  const n = bin.length >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
    if (v >= 0x8000) v -= 0x10000;
    out[i] = v / 0x8000;
  }
  return out;
}

export class Voice {
  /**
   * `on` receives: chunk(base64, rms), started(id), progress(msg),
   * drained(msg).
   */
  constructor(on) {
    this.on = on;
    this.ctx = null;
    this.player = null;
    this.stream = null;
    this.capture = null;
    this.source = null;
    this.muted = false;
    this.seq = 0;
    this.waiting = new Map();
    this.early = []; // what was to be played before the player was ready
    this.closed = false;
  }

  /**
   * Creates the audio context. Call it from a click (browsers let a page
   * make sound only after a user gesture); the worklets load meanwhile.
   */
  open() {
    this.ctx = new AudioContext({ latencyHint: "interactive" });
    const resumed = this.ctx.resume();
    this.ready = Promise.all([
      this.ctx.audioWorklet.addModule("/assets/capture-worklet.js"),
      this.ctx.audioWorklet.addModule("/assets/playback-worklet.js"),
      resumed,
    ]).then(() => {
      if (this.closed) return;
      this.player = new AudioWorkletNode(this.ctx, "interviewd-playback", {
        numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
      });
      this.player.port.onmessage = (e) => this.fromPlayer(e.data);
      this.player.connect(this.ctx.destination);
      for (const [message, transfer] of this.early) this.player.port.postMessage(message, transfer);
      this.early = [];
    });
    return this.ready;
  }

  get latencyMs() {
    if (!this.ctx) return 0;
    return 1000 * ((this.ctx.baseLatency || 0) + (this.ctx.outputLatency || 0));
  }

  fromPlayer(m) {
    if (m.type === "cleared") {
      const resolve = this.waiting.get(m.seq);
      this.waiting.delete(m.seq);
      if (resolve) resolve(m);
    } else if (this.on[m.type]) {
      this.on[m.type](m);
    }
  }

  /**
   * Opens the microphone. Rejects with the getUserMedia error (its `name`
   * says why: NotAllowedError, NotFoundError, ...).
   */
  async startMic() {
    await this.ready;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    if (!this.ctx || this.ctx.state === "closed") {
      stream.getTracks().forEach((t) => t.stop());
      throw new DOMException("the audio was closed", "AbortError");
    }
    this.stream = stream;
    this.source = this.ctx.createMediaStreamSource(stream);
    this.capture = new AudioWorkletNode(this.ctx, "interviewd-capture", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
    });
    this.capture.port.onmessage = (e) => {
      this.on.chunk(bytesToBase64(new Uint8Array(e.data.pcm)), e.data.rms);
    };
    this.source.connect(this.capture);
    // Its output is silence; connecting it keeps it rendered everywhere.
    this.capture.connect(this.ctx.destination);
    this.setMuted(this.muted);
    if (this.ctx.state !== "running") await this.ctx.resume();
  }

  get micOn() {
    return !!this.stream;
  }

  setMuted(muted) {
    this.muted = muted;
    // A disabled track gives silence: the turn detection still sees the
    // end of a turn.
    if (this.stream) this.stream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  }

  stopMic() {
    if (this.capture) {
      this.capture.port.postMessage("stop");
      this.capture.disconnect();
      this.capture = null;
    }
    if (this.source) {
      this.source.disconnect();
      this.source = null;
    }
    if (this.stream) {
      this.stream.getTracks().forEach((t) => t.stop());
      this.stream = null;
    }
  }

  /** Queues a response.output_audio.delta of item `id`. */
  play(id, b64) {
    if (this.closed) return 0;
    const samples = base64ToSamples(b64);
    const n = samples.length; // the transfer empties `samples`
    this.toPlayer({ type: "push", id, samples }, [samples.buffer]);
    return n;
  }

  /** No more audio will come for item `id`. */
  end(id) {
    this.toPlayer({ type: "end", id }, []);
  }

  toPlayer(message, transfer) {
    if (this.player) this.player.port.postMessage(message, transfer);
    else if (!this.closed) this.early.push([message, transfer]);
  }

  /**
   * Stops playback at once and drops what is queued; resolves to what was
   * heard: {id, played} (24 kHz samples of item `id`; id null if nothing
   * was playing or queued).
   */
  interrupt() {
    if (!this.player) {
      const first = this.early.find(([m]) => m.type === "push");
      this.early = [];
      return Promise.resolve({ id: first ? first[0].id : null, played: 0, total: 0 });
    }
    this.seq += 1;
    const seq = this.seq;
    return new Promise((resolve) => {
      this.waiting.set(seq, resolve);
      this.player.port.postMessage({ type: "clear", seq });
    });
  }

  close() {
    this.closed = true;
    this.early = [];
    this.stopMic();
    if (this.ctx && this.ctx.state !== "closed") this.ctx.close();
    this.ctx = null;
    this.player = null;
  }
}
