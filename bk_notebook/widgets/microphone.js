// Microphone widget front end: getUserMedia -> AudioWorklet -> 16 kHz int16 -> 3200-byte binary messages.
//
// One capture per widget model, however many views show it: captures live in a module-level map
// keyed by the model's capture id, and every view only renders what that capture reports.
// When the last view leaves the page (its cell re-ran, its output was cleared, the widget was
// closed), the capture stops and the kernel hears "detached": nobody can see it or press Stop.

const CHUNK_SAMPLES = 1600; // 3200 bytes = 100 ms at 16 kHz
// Level meter: RMS of each chunk in dBFS (0 dBFS = a full-scale square wave; a full-scale sine reads -3),
// and a clipping light held for CLIP_HOLD_MS after any sample reaches full scale.
const FLOOR_DB = -60;
const CLIP = 32767 / 32768;
const CLIP_HOLD_MS = 1500;
const dbfs = (rms) => Math.max(FLOOR_DB, 20 * Math.log10(Math.max(rms, 1e-9)));

// Runs on the audio thread: downmix, low-pass, resample to 16 kHz at the context's real rate,
// convert to int16, and post 1600-sample chunks (transferred, not copied) with their level.
const WORKLET = `
class BkCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.step = sampleRate / 16000;   // input samples per output sample
    this.pos = 0;                      // fractional read position into the current block
    this.prev = 0;                     // last filtered input sample (for interpolation)
    this.lp = 0;                       // one-pole low-pass state (anti-aliasing)
    this.alpha = Math.min(1, 2 * Math.PI * 7000 / sampleRate);
    this.out = new Int16Array(${CHUNK_SAMPLES});
    this.n = 0;
    this.sumsq = 0;
    this.peak = 0;                     // largest |input sample| since the last chunk
  }
  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const frames = channels[0].length;
    for (let i = 0; i < frames; i++) {
      let x = 0;
      for (let c = 0; c < channels.length; c++) x += channels[c][i];
      x /= channels.length;
      this.peak = Math.max(this.peak, Math.abs(x)); // before filtering: clipping is in the input
      this.lp += this.alpha * (x - this.lp);
      const cur = this.lp;
      // Emit every output sample whose time falls between the previous and this input sample.
      while (this.pos <= 1) {
        const y = this.prev + (cur - this.prev) * this.pos;
        const s = Math.max(-1, Math.min(1, y));
        this.out[this.n++] = s < 0 ? s * 32768 : s * 32767;
        this.sumsq += s * s;
        this.pos += this.step;
        if (this.n === ${CHUNK_SAMPLES}) {
          const level = Math.sqrt(this.sumsq / ${CHUNK_SAMPLES});
          this.port.postMessage({ pcm: this.out.buffer, level, peak: this.peak }, [this.out.buffer]);
          this.out = new Int16Array(${CHUNK_SAMPLES});
          this.n = 0;
          this.sumsq = 0;
          this.peak = 0;
        }
      }
      this.pos -= 1;
      this.prev = cur;
    }
    return true;
  }
}
registerProcessor("bk-capture", BkCapture);
`;

const captures = new Map(); // capture id -> { state, started, level, message, listeners, stop }

function captureFor(id) {
  if (!captures.has(id)) {
    captures.set(id, { state: "idle", started: 0, level: 0, clippedAt: -1e9, message: "", listeners: new Set(), stop: null });
  }
  return captures.get(id);
}

function notify(cap) {
  for (const fn of cap.listeners) fn();
}

function explain(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError")
    return "Microphone permission denied: allow the microphone for this page in the browser's site settings, then press Start again.";
  if (name === "NotFoundError" || name === "OverconstrainedError")
    return "No microphone found: connect an input device and press Start again.";
  if (name === "NotReadableError")
    return "The microphone is busy or unavailable (another application may be using it).";
  return `Could not start the microphone: ${(err && err.message) || err}`;
}

async function start(model, cap) {
  if (cap.state === "starting" || cap.state === "recording") return;
  cap.state = "starting";
  cap.message = "";
  notify(cap);
  const fail = (message) => {
    cap.state = "error";
    cap.message = message;
    notify(cap);
    model.send({ type: "error", message });
  };
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return fail("The microphone needs a secure page: open Jupyter on https:// or on localhost / 127.0.0.1.");
  }
  let stream, ctx;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: true },
      video: false,
    });
  } catch (err) {
    return fail(explain(err));
  }
  try {
    ctx = new AudioContext();
    if (!ctx.audioWorklet) throw new Error("AudioWorklet is not available on this page (insecure origin?)");
    const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
    await ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "bk-capture", { numberOfInputs: 1, numberOfOutputs: 0 });
    let seq = 0;
    node.port.onmessage = ({ data }) => {
      cap.level = data.level;
      cap.seq = seq; // the chunk this level belongs to (shown as data-seq, for checking the meter)
      if (data.peak >= CLIP) cap.clippedAt = performance.now();
      model.send({ type: "chunk", seq: seq++ }, undefined, [data.pcm]);
      notify(cap);
    };
    source.connect(node);
    cap.stop = async () => {
      node.port.onmessage = null;
      source.disconnect();
      stream.getTracks().forEach((t) => t.stop());
      await ctx.close();
    };
    cap.state = "recording";
    cap.started = performance.now();
    model.send({ type: "started", sample_rate: ctx.sampleRate });
    notify(cap);
    if (cap.listeners.size === 0) stop(model, cap); // every view left while the browser was starting
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    if (ctx) ctx.close();
    fail(explain(err));
  }
}

async function stop(model, cap) {
  if (cap.state !== "recording") return;
  const release = cap.stop;
  cap.stop = null;
  cap.state = "idle";
  cap.level = 0;
  notify(cap);
  await release();
  safeSend(model, { type: "stopped" });
}

function safeSend(model, content) {
  try {
    model.send(content);
  } catch (err) {
    // The widget was closed in the kernel: nobody is left to tell.
  }
}

function render({ model, el }) {
  const id = model.get("_capture_id");
  const cap = captureFor(id);

  const root = document.createElement("div");
  root.className = "bk-mic";
  const button = document.createElement("button");
  button.className = "bk-mic-button";
  const meter = document.createElement("meter");
  meter.className = "bk-mic-level";
  meter.min = FLOOR_DB;
  meter.max = 0;
  meter.low = -40;
  meter.high = -6;
  meter.optimum = -20;
  const db = document.createElement("span");
  db.className = "bk-mic-db";
  const clip = document.createElement("span");
  clip.className = "bk-mic-clip";
  clip.textContent = "CLIP";
  clip.title = "a sample reached full scale in the last 1.5 s: speak softer or move away from the microphone";
  const clock = document.createElement("span");
  clock.className = "bk-mic-time";
  const message = document.createElement("div");
  message.className = "bk-mic-message";
  root.append(button, meter, db, clip, clock, message);
  el.appendChild(root);

  const paint = () => {
    const recording = cap.state === "recording";
    button.style.display = model.get("show_button") ? "" : "none";
    button.textContent = recording ? "■ Stop" : cap.state === "starting" ? "… starting" : "● Start";
    button.disabled = cap.state === "starting";
    button.dataset.state = cap.state;
    const level = recording ? dbfs(cap.level) : FLOOR_DB;
    meter.value = level;
    db.textContent = recording ? `${level.toFixed(0)} dBFS` : "";
    db.dataset.db = level.toFixed(2);
    db.dataset.seq = String(cap.seq ?? -1);
    clip.dataset.clipping = String(recording && performance.now() - (cap.clippedAt || -1e9) < CLIP_HOLD_MS);
    const seconds = recording ? (performance.now() - cap.started) / 1000 : 0;
    clock.textContent = recording ? `${seconds.toFixed(1)} s` : "";
    message.textContent = cap.message;
    message.style.display = cap.message ? "block" : "none";
  };
  cap.listeners.add(paint);
  paint();
  const timer = setInterval(() => cap.state === "recording" && paint(), 250);

  button.addEventListener("click", () => (cap.state === "recording" ? stop(model, cap) : start(model, cap)));
  const onCustom = (msg) => {
    if (msg && msg.type === "start") start(model, cap);
    if (msg && msg.type === "stop") stop(model, cap);
  };
  model.on("msg:custom", onCustom);
  model.on("change:show_button", paint);

  return () => {
    clearInterval(timer);
    cap.listeners.delete(paint);
    model.off("msg:custom", onCustom);
    model.off("change:show_button", paint);
    if (cap.listeners.size === 0) {
      stop(model, cap);
      safeSend(model, { type: "detached" });
    }
  };
}

export default { render };
