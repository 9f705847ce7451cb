// The microphone side of a voice interview, on the audio thread: mixes the
// input to mono, resamples it from the context's rate to 24 kHz, and posts
// 40 ms chunks of PCM16 little-endian (960 samples, 1920 bytes) with their
// RMS level (0..1) to the page, which sends them as input_audio_buffer.append.
//
// Resampling: a moving average over one input period of the output rate
// (a cheap low-pass against aliasing), then linear interpolation.
const OUT_RATE = 24000;
const CHUNK = 960;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.t = 0; // time of the next output sample, in input samples from this block's start
    this.last = 0; // last filtered sample of the previous block (index -1)
    this.taps = Math.max(1, Math.round(this.step));
    this.ring = new Float32Array(this.taps);
    this.ringAt = 0;
    this.filtered = new Float32Array(128);
    this.newChunk();
    this.stopped = false;
    this.port.onmessage = (e) => {
      if (e.data === "stop") this.stopped = true;
    };
  }

  newChunk() {
    this.buffer = new ArrayBuffer(CHUNK * 2);
    this.view = new DataView(this.buffer);
    this.n = 0;
    this.squares = 0;
  }

  emit(x) {
    const s = Math.max(-1, Math.min(1, x));
    this.view.setInt16(this.n * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    this.squares += s * s;
    this.n += 1;
    if (this.n === CHUNK) {
      const rms = Math.sqrt(this.squares / CHUNK);
      this.port.postMessage({ pcm: this.buffer, rms }, [this.buffer]);
      this.newChunk();
    }
  }

  process(inputs) {
    if (this.stopped) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const len = input[0].length;
    if (this.filtered.length < len) this.filtered = new Float32Array(len);
    const f = this.filtered;
    const channels = input.length;
    for (let i = 0; i < len; i++) {
      let x = 0;
      for (let c = 0; c < channels; c++) x += input[c][i];
      x /= channels;
      this.ring[this.ringAt] = x;
      this.ringAt = (this.ringAt + 1) % this.taps;
      let sum = 0;
      for (let k = 0; k < this.taps; k++) sum += this.ring[k];
      f[i] = sum / this.taps;
    }
    while (this.t < len - 1) {
      const i = Math.floor(this.t);
      const frac = this.t - i;
      const a = i < 0 ? this.last : f[i];
      const b = f[i + 1];
      this.emit(a + (b - a) * frac);
      this.t += this.step;
    }
    this.t -= len;
    this.last = f[len - 1];
    return true;
  }
}

registerProcessor("interviewd-capture", CaptureProcessor);
