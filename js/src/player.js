// Transcript player front end: wavesurfer.js draws the waveform from peaks computed in Python, one
// Regions-plugin region per final, the transcript as a list of lines; an <audio> element plays.
//
// The audio never sits in a synced trait (so it is never saved into the notebook): each front end
// asks the kernel for it once per model with a custom message, and the kernel answers with the
// encoded file (WAV, FLAC or Opus) as one binary buffer.  With `embed_audio=True` in Python the bytes
// come in the `_embedded` trait instead (saved with the widget state, because the user asked).
//
// Finals that carry timed words show each word as its own span: the word playing is highlighted, a
// click on a word plays from its start, and words below `low_probability` (0: off) are shaded.
//
// Built into bk_notebook/widgets/player.js by `npm ci && npm run build` in js/.
import WaveSurfer from "wavesurfer.js";
import RegionsPlugin from "wavesurfer.js/dist/plugins/regions.esm.js";

const COLORS = ["rgba(33, 150, 243, 0.18)", "rgba(255, 152, 0, 0.20)"];
const CURRENT = "rgba(76, 175, 80, 0.40)";
const VISIBLE_SECONDS = 45; // longer recordings scroll (following the cursor) instead of squeezing
// The labels live in wavesurfer's shadow root, where the widget's stylesheet does not reach.
const LABEL_STYLE = {
  display: "block", whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis",
  fontSize: "11px", padding: "1px 3px", color: "#263238",
};

const audioByModel = new WeakMap(); // model -> Promise<object URL>

function audioUrl(model) {
  if (audioByModel.has(model)) return audioByModel.get(model);
  const promise = new Promise((resolve, reject) => {
    const embedded = model.get("_embedded");
    if (embedded && embedded.byteLength > 0) {
      resolve(URL.createObjectURL(new Blob([embedded], { type: model.get("mime") })));
      return;
    }
    const onMessage = (msg, buffers) => {
      if (!msg || msg.type !== "audio") return;
      model.off("msg:custom", onMessage);
      if (msg.error || !buffers || !buffers.length) return reject(new Error(msg.error || "no audio in the reply"));
      resolve(URL.createObjectURL(new Blob([buffers[0]], { type: msg.mime })));
    };
    model.on("msg:custom", onMessage);
    model.send({ type: "request_audio" });
  });
  audioByModel.set(model, promise);
  return promise;
}

function peaksOf(model) {
  const raw = model.get("_peaks"); // uint8, 0..255 = 0..full scale of |sample|
  const bytes = raw ? new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) : new Uint8Array(0);
  const peaks = new Float32Array(Math.max(bytes.length, 1));
  for (let i = 0; i < bytes.length; i++) peaks[i] = bytes[i] / 255;
  return peaks;
}

function clock(seconds) {
  const s = Math.max(0, seconds);
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
}

// The final playing at `time`: the last whose start is at or before it, if `time` is before its end.
function finalAt(finals, time) {
  let found = -1;
  for (let i = 0; i < finals.length; i++) {
    if (finals[i].start <= time + 1e-3) found = i;
    else break;
  }
  return found >= 0 && time < finals[found].end ? found : -1;
}

// The word playing at `time` within one final's words: the last that started, while it has not ended.
function wordAt(words, time) {
  let found = -1;
  for (let i = 0; i < words.length; i++) {
    if (words[i].start <= time + 1e-3) found = i;
    else break;
  }
  return found >= 0 && time < words[found].end ? found : -1;
}

function wordSpans(final, index, lowProbability) {
  return (final.words || []).map((w, j) => {
    const span = document.createElement("span");
    span.className = "bk-player-word";
    span.dataset.index = String(index);
    span.dataset.word = String(j);
    span.dataset.start = String(w.start);
    span.textContent = w.word;
    if (w.probability !== null && w.probability !== undefined) {
      span.title = `p = ${w.probability.toFixed(2)}`;
      if (w.probability < lowProbability) span.classList.add("bk-low");
    }
    return span;
  });
}

function render({ model, el }) {
  const finals = model.get("finals");
  const duration = model.get("duration");
  const lowProbability = model.get("low_probability");

  const root = document.createElement("div");
  root.className = "bk-player";
  root.tabIndex = 0; // focusable, so that space can toggle play
  root.dataset.lmSuppressShortcuts = "true"; // JupyterLab: keys pressed here are the widget's
  root.dataset.state = "loading";
  const wave = document.createElement("div");
  wave.className = "bk-player-wave";
  const bar = document.createElement("div");
  bar.className = "bk-player-controls";
  const play = document.createElement("button");
  play.className = "bk-player-play";
  play.textContent = "▶ Play";
  play.disabled = true;
  const time = document.createElement("span");
  time.className = "bk-player-time";
  time.textContent = `0:00.0 / ${clock(duration)}`;
  const status = document.createElement("span");
  status.className = "bk-player-status";
  status.textContent = "loading audio…";
  const media = document.createElement("audio");
  media.className = "bk-player-audio";
  media.preload = "auto";
  bar.append(play, time, status, media);
  const list = document.createElement("ol");
  list.className = "bk-player-lines";
  const wordsByFinal = []; // per final, its word spans (empty when the server timed no words)
  const lines = finals.map((f, i) => {
    const li = document.createElement("li");
    li.className = "bk-player-line";
    li.dataset.index = String(i);
    li.dataset.start = String(f.start);
    const at = document.createElement("span");
    at.className = "bk-player-at";
    at.textContent = clock(f.start);
    const text = document.createElement("span");
    text.className = "bk-player-text";
    const spans = wordSpans(f, i, lowProbability);
    if (spans.length) spans.forEach((span, j) => text.append(...(j ? [" ", span] : [span])));
    else text.textContent = f.text;
    wordsByFinal.push(spans);
    li.append(at, text);
    list.append(li);
    return li;
  });
  root.append(wave, bar, list);
  el.appendChild(root);

  const ws = WaveSurfer.create({
    container: wave,
    media,
    peaks: [peaksOf(model)],
    duration,
    height: 96,
    waveColor: "#90a4ae",
    progressColor: "#37474f",
    cursorColor: "#d32f2f",
    normalize: true,
    autoScroll: true,
    autoCenter: true,
    minPxPerSec: duration > VISIBLE_SECONDS ? (wave.clientWidth || 900) / VISIBLE_SECONDS : 0,
  });
  const regions = ws.registerPlugin(RegionsPlugin.create());
  let byIndex = [];
  let current = -2;
  let currentWord = null;

  const highlightWord = (index, t) => {
    const words = index >= 0 ? finals[index].words || [] : [];
    const j = words.length ? wordAt(words, t) : -1;
    const span = j >= 0 ? wordsByFinal[index][j] : null;
    if (span === currentWord) return;
    if (currentWord) currentWord.classList.remove("bk-current-word");
    currentWord = span;
    if (span) span.classList.add("bk-current-word");
    root.dataset.currentWord = span ? `${index}:${j}` : "";
  };

  const highlight = (index) => {
    if (index === current) return;
    current = index;
    root.dataset.current = String(index);
    lines.forEach((li, i) => li.classList.toggle("bk-current", i === index));
    byIndex.forEach((region, i) => {
      region.setOptions({ color: i === index ? CURRENT : COLORS[i % 2] });
      if (region.element) region.element.classList.toggle("bk-current", i === index);
    });
    if (index >= 0 && lines[index].scrollIntoView && !list.matches(":hover")) {
      lines[index].scrollIntoView({ block: "nearest" });
    }
  };

  const playFrom = (index, start = finals[index].start) => {
    ws.setTime(start);
    highlight(index);
    highlightWord(index, start);
    ws.play().catch((err) => (status.textContent = `cannot play: ${err.message}`));
  };

  ws.once("decode", () => {
    byIndex = finals.map((f, i) => {
      const label = document.createElement("span");
      label.className = "bk-player-region-label";
      label.textContent = f.text;
      label.title = f.text;
      Object.assign(label.style, LABEL_STYLE);
      const region = regions.addRegion({
        id: `final-${i}`, start: f.start, end: Math.max(f.end, f.start + 0.01), content: label,
        color: COLORS[i % 2], drag: false, resize: false,
      });
      if (region.element) {
        region.element.classList.add("bk-player-region");
        region.element.dataset.index = String(i);
      }
      return region;
    });
    root.dataset.regions = String(byIndex.length);
  });
  ws.on("redrawcomplete", () => {
    if (root.dataset.state === "loading") root.dataset.state = "drawn";
  });
  regions.on("region-clicked", (region, event) => {
    event.stopPropagation(); // the waveform's own click would seek to the pointer instead
    const index = byIndex.indexOf(region);
    if (index >= 0) playFrom(index);
  });
  const onLine = (event) => {
    const word = event.target.closest(".bk-player-word");
    if (word) return playFrom(Number(word.dataset.index), Number(word.dataset.start));
    const li = event.target.closest(".bk-player-line");
    if (li) playFrom(Number(li.dataset.index));
  };
  list.addEventListener("click", onLine);
  play.addEventListener("click", () => ws.playPause());
  const onKey = (event) => {
    if (event.key === " " || event.code === "Space") {
      event.preventDefault();
      event.stopPropagation();
      if (!play.disabled) ws.playPause();
    }
  };
  root.addEventListener("keydown", onKey);

  ws.on("timeupdate", (t) => {
    time.textContent = `${clock(t)} / ${clock(duration)}`;
    const index = finalAt(finals, t);
    highlight(index);
    highlightWord(index, t);
  });
  ws.on("play", () => {
    play.textContent = "‖ Pause";
    root.dataset.playing = "true";
  });
  ws.on("pause", () => {
    play.textContent = "▶ Play";
    root.dataset.playing = "false";
  });
  ws.on("error", (err) => (status.textContent = `audio error: ${err && err.message ? err.message : err}`));

  let alive = true;
  audioUrl(model).then(
    (url) => {
      if (!alive) return;
      media.addEventListener("loadedmetadata", () => {
        play.disabled = false;
        status.textContent = "";
        root.dataset.audio = "ready";
      }, { once: true });
      media.src = url;
    },
    (err) => {
      status.textContent = `no audio: ${err.message}`;
      root.dataset.audio = "error";
    },
  );

  return () => {
    alive = false;
    root.removeEventListener("keydown", onKey);
    list.removeEventListener("click", onLine);
    ws.destroy();
  };
}

export default { render };
