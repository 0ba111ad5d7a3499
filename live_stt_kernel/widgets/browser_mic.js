// The browser microphone of live_stt_kernel (see browser_mic.py for the message protocol).
//
// A click asks for the microphone; an AudioWorklet turns the device's 44.1/48 kHz float audio into
// 16 kHz PCM16 and posts numbered 50 ms chunks; this thread sends each over the widget comm as a
// binary buffer (or base64 text where buffers do not get through). The kernel acknowledges every
// few chunks; when acknowledgements fall behind, the kernel is busy (a cell is running) and we say
// so: the chunks wait in the connection and are not lost.

const RATE = 16000;
const CHUNK = 800; // samples per chunk: 50 ms at 16 kHz
const BUSY_AFTER = 20; // unacknowledged chunks (1 s) before we call the kernel busy

// Runs on the audio thread. A Hann-windowed sinc low-pass (63 taps, 7.2 kHz) keeps what 16 kHz can
// hold; 16 kHz samples are then picked from the filtered signal by linear interpolation, so any
// device rate works. We never ask for a 16 kHz AudioContext: some browsers refuse one.
export const WORKLET = `
function lowPass(cutoff, n) {  // cutoff as a fraction of the sample rate; taps sum to 1
  const taps = new Float32Array(n), m = (n - 1) / 2;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = i - m;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    taps[i] = sinc * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1)));
    sum += taps[i];
  }
  return taps.map((t) => t / sum);
}

class Downsampler extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / ${RATE}; // input samples per output sample
    this.taps = lowPass(Math.min(7200, 0.45 * sampleRate) / sampleRate, 63);
    this.hist = new Float32Array(this.taps.length); // recent input, a ring
    this.h = 0;
    this.k = 0; // index of the current input sample
    this.j = 0; // index of the next output sample, at input position j * step
    this.prev = 0; // the filtered input sample k - 1
    this.out = new Int16Array(${CHUNK});
    this.n = 0;
    this.seq = 0;
    this.port.onmessage = (e) => {
      if (e.data === "flush") { // the recording stops: send the partial chunk, then say which was last
        this.post(this.out.slice(0, this.n));
        this.port.postMessage({ flushed: true, last: this.seq - 1 });
      }
    };
  }

  post(pcm) {
    if (pcm.length === 0) return;
    this.port.postMessage({ seq: this.seq++, pcm: pcm.buffer }, [pcm.buffer]);
    this.out = new Int16Array(${CHUNK});
    this.n = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true; // no audio yet
    const taps = this.taps, hist = this.hist, len = hist.length;
    for (let i = 0; i < input[0].length; i++) {
      let x = 0;
      for (let c = 0; c < input.length; c++) x += input[c][i];
      hist[this.h] = x / input.length;
      let y = 0;
      for (let t = 0, at = this.h; t < len; t++, at = at === 0 ? len - 1 : at - 1) y += taps[t] * hist[at];
      this.h = (this.h + 1) % len;
      // every output sample that falls between input samples k - 1 and k
      for (let at = this.j * this.step; at <= this.k; at = ++this.j * this.step) {
        const v = this.prev + (y - this.prev) * (at - this.k + 1);
        this.out[this.n++] = Math.max(-32768, Math.min(32767, Math.round(v * 32768)));
        if (this.n === ${CHUNK}) this.post(this.out);
      }
      this.prev = y;
      this.k++;
    }
    return true;
  }
}
registerProcessor("live-stt-downsampler", Downsampler);
`;

// Why the microphone could not be opened, in words a user can act on.
function explain(err) {
  const name = (err && err.name) || "";
  if (name === "NotAllowedError" || name === "PermissionDeniedError" || name === "SecurityError") {
    return ["denied", "The browser blocked the microphone. Allow it for this page (the microphone or lock icon " +
      "in the address bar), then press “Start microphone” again. If the notebook is shown inside another page " +
      "(an iframe), that page must allow the microphone too."];
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError") {
    return ["error", "No microphone was found on this computer. Connect one, then press “Start microphone”."];
  }
  if (name === "NotReadableError" || name === "TrackStartError") {
    return ["error", "The microphone could not be opened: another application may be using it, or the system " +
      "blocked it (check the system's privacy settings)."];
  }
  return ["error", `The microphone could not be started: ${name || "error"}: ${(err && err.message) || err}`];
}

// What stops us before asking, or null.
function unsupported() {
  if (!window.isSecureContext) {
    return ["insecure", `Browsers only give the microphone to secure pages, and this one is not ` +
      `(${location.protocol}//${location.host}). Open Jupyter over https://, or at http://localhost or ` +
      "http://127.0.0.1 — for a remote server, through an SSH tunnel: ssh -L 8888:localhost:8888 server, " +
      "then open http://localhost:8888."];
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return ["error", "This browser does not offer microphone access to pages (navigator.mediaDevices is " +
      "missing). Use a current Chrome, Edge, Firefox or Safari."];
  }
  if (typeof AudioWorkletNode === "undefined") {
    return ["error", "This browser lacks AudioWorklet, which the microphone needs. Use a current Chrome, " +
      "Edge, Firefox or Safari."];
  }
  return null;
}

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function render({ model, el }) {
  el.classList.add("live-stt-mic");
  el.innerHTML = `<button class="live-stt-mic-button" type="button"></button>
    <span class="live-stt-mic-level"><span></span></span>
    <span class="live-stt-mic-state"></span>
    <div class="live-stt-mic-message"></div>
    <div class="live-stt-mic-stats"></div>`;
  const [button, level, stateEl, messageEl, statsEl] =
    ["button", ".live-stt-mic-level span", ".live-stt-mic-state", ".live-stt-mic-message", ".live-stt-mic-stats"]
      .map((s) => el.querySelector(s));

  // What this view shows: the kernel's state and message, or newer news of our own while the kernel
  // is busy (its own copy arrives later and agrees).
  let shown = { state: model.get("state"), message: model.get("message") };
  let rec = null; // the recording in progress: {id, stream, ctx, node, sent, acked, peak, flushed, stopping}
  let starting = false; // between the click and the first audio (or the error)
  let timer = null;
  let lastLag = -1;

  function show(state, message) {
    shown = { state, message };
    draw();
  }

  function report(state, message) { // tell the kernel too (it may hear it later)
    show(state, message);
    model.send({ type: "status", state, message });
  }

  function draw() {
    // the button follows what this page does, not the kernel's (possibly late) word
    button.textContent = rec ? "Stop" : "Start microphone";
    button.disabled = starting;
    el.dataset.state = shown.state;
    stateEl.textContent = shown.state;
    messageEl.textContent = shown.message;
    level.style.width = rec ? `${Math.round(100 * Math.min(1, Math.sqrt(rec.peak)))}%` : "0%";
    const kernel = `kernel has ${model.get("chunks")} chunks (${model.get("seconds").toFixed(1)} s), ` +
      `${model.get("gaps")} lost`;
    if (!rec) {
      statsEl.textContent = model.get("chunks") ? kernel : "";
      el.classList.remove("live-stt-mic-busy");
      return;
    }
    const waiting = rec.sent - 1 - rec.acked;
    const busy = waiting > BUSY_AFTER
      ? ` — kernel busy: ${waiting} chunks waiting (${(waiting * CHUNK / RATE).toFixed(1)} s); they are kept ` +
        "and arrive when the kernel is free again"
      : "";
    statsEl.textContent = `sent ${rec.sent} chunks (${(rec.sent * CHUNK / RATE).toFixed(1)} s), ${kernel}${busy}`;
    el.classList.toggle("live-stt-mic-busy", busy !== "");
    // tell the kernel, coarsely, and only when it is behind (it reads this as a trait when it can)
    const lag = busy ? Math.round((waiting * CHUNK * 2) / RATE) * 500 : 0;
    if (lag !== lastLag) {
      lastLag = lag;
      model.set("lag_ms", lag);
      model.save_changes();
    }
  }

  function sendChunk(seq, buffer) {
    const msg = { type: "chunk", rec: rec.id, seq, rate: RATE };
    if (model.get("encoding") !== "base64") {
      try {
        model.send(msg, undefined, [buffer]);
        return;
      } catch (err) { // this frontend cannot carry buffers: text from now on
        model.set("encoding", "base64");
        model.save_changes();
      }
    }
    model.send({ ...msg, b64: toBase64(buffer) });
  }

  async function start() {
    const problem = unsupported();
    if (problem) return report(...problem);
    starting = true;
    try {
      await open();
    } finally {
      starting = false;
      draw();
    }
  }

  async function open() {
    // Made inside the click so that autoplay rules let it run; at the device's own rate.
    const ctx = new AudioContext({ latencyHint: "playback" }); // big buffers: words need no low latency
    report("requesting", "Asking the browser for the microphone…");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      ctx.close();
      return report(...explain(err));
    }
    try {
      const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
      try {
        await ctx.audioWorklet.addModule(url);
      } finally {
        URL.revokeObjectURL(url);
      }
      await Promise.race([ctx.resume(), new Promise((_, reject) => setTimeout(
        () => reject(new Error("the browser's audio engine did not start (is there an audio output device?)")), 5000))]);
      const node = new AudioWorkletNode(ctx, "live-stt-downsampler", { numberOfOutputs: 1 });
      const [track] = stream.getAudioTracks();
      rec = { id: Math.floor(Math.random() * 2 ** 31), stream, ctx, node, sent: 0, acked: -1, peak: 0,
              flushed: null, stopping: false };
      node.port.onmessage = (e) => {
        if (e.data.flushed) return rec && rec.flushed && rec.flushed(e.data.last);
        const pcm = new Int16Array(e.data.pcm);
        let peak = 0;
        for (let i = 0; i < pcm.length; i++) peak = Math.max(peak, Math.abs(pcm[i]));
        rec.peak = peak / 32768;
        sendChunk(e.data.seq, e.data.pcm);
        rec.sent = e.data.seq + 1;
      };
      track.onended = () => stop("ended"); // unplugged, revoked, or taken by the system
      model.send({ type: "start", rec: rec.id, rate: RATE, chunk_samples: CHUNK, device_rate: ctx.sampleRate,
                   device: track.label });
      ctx.createMediaStreamSource(stream).connect(node);
      node.connect(ctx.destination); // silent: the processor writes nothing; connected so that it runs
      show("recording", `Recording from ${track.label || "the microphone"}.`);
      timer = setInterval(draw, 250);
    } catch (err) {
      stream.getTracks().forEach((tr) => tr.stop());
      ctx.close();
      rec = null;
      report("error", `The audio pipeline could not be started: ${err.name || "error"}: ${err.message || err}`);
    }
  }

  async function stop(reason) {
    const r = rec;
    if (!r || r.stopping) return;
    r.stopping = true;
    // Ask the worklet for its partial chunk and the last sequence number (give up after 0.5 s).
    const last = await new Promise((resolve) => {
      r.flushed = resolve;
      r.node.port.postMessage("flush");
      setTimeout(() => resolve(r.sent - 1), 500);
    });
    rec = null;
    clearInterval(timer);
    r.stream.getTracks().forEach((tr) => { tr.onended = null; tr.stop(); });
    r.node.port.onmessage = null;
    r.ctx.close();
    model.send({ type: "stop", rec: r.id, last_seq: last, reason });
    if (lastLag > 0) {
      lastLag = 0;
      model.set("lag_ms", 0);
      model.save_changes();
    }
    if (reason === "ended") show("error", "The microphone stopped delivering audio (unplugged, muted by the " +
      "system, or taken by another application). Press “Start microphone” to go on.");
    else show("stopped", reason === "kernel" ? "Stopped by the kernel." : "Stopped.");
  }

  button.addEventListener("click", () => (rec ? stop("user") : start()));
  const onMsg = (msg) => {
    if (msg.type === "ack" && rec && msg.rec === rec.id) rec.acked = Math.max(rec.acked, msg.seq);
    else if (msg.type === "stop") stop("kernel");
  };
  const onState = () => show(model.get("state"), model.get("message"));
  model.on("msg:custom", onMsg);
  model.on("change:state", onState);
  model.on("change:message", onState);
  model.on("change:chunks", draw);
  draw();
  return () => { // the view goes away (cell cleared or re-run): do not leave the microphone on
    model.off("msg:custom", onMsg);
    model.off("change:state", onState);
    model.off("change:message", onState);
    model.off("change:chunks", draw);
    stop("closed");
  };
}

export default { render };
