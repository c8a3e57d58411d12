// The page at `/`: talk to the agent over WebRTC (websocket fallback), live captions, session
// state, a latency waterfall per turn, and the backend's health. Plain JS, no build step.
// `window.voice` exposes the live call (peer connection, events) for tests and the console.
"use strict";

const $ = (id) => document.getElementById(id);
const SEGMENTS = [
  ["end_of_turn_delay_ms", "end-of-turn silence"],
  ["stt_final_ms", "STT final"],
  ["agent_ms", "agent"],
  ["tts_first_audio_ms", "TTS first audio"],
];
const CONNECT_TIMEOUT_MS = 10000;

const voice = (window.voice = {
  session: null, transport: null, pc: null, dc: null, ws: null, events: [], turns: [],
});

// -- health -----------------------------------------------------------------------------------
async function refreshHealth() {
  const box = $("health");
  try {
    const resp = await fetch("/v1/health");
    const h = await resp.json();
    const max = h.max_concurrent_sessions;
    const slots = h.details && h.details.session_slots;
    const cap = max || slots || 0;
    const available = cap ? Math.max(0, cap - h.active_sessions) : "∞";
    box.className = "health " + h.status;
    $("health-status").textContent = h.status;
    $("health-sessions").textContent =
      ` · ${h.active_sessions} active · ${available} available` + (max ? ` of ${max}` : "");
  } catch (err) {
    box.className = "health unhealthy";
    $("health-status").textContent = "unreachable";
    $("health-sessions").textContent = "";
  }
}

// -- UI helpers -------------------------------------------------------------------------------
function showError(message) {
  $("errors").textContent = message;
}

function caption(who, text, cls) {
  const line = document.createElement("div");
  line.className = "caption " + (cls || who);
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who === "user" ? "You" : "Agent";
  line.append(name, document.createTextNode(text));
  $("captions").append(line);
  $("captions").scrollTop = $("captions").scrollHeight;
}

function drawLegend() {
  $("legend").replaceChildren(
    ...SEGMENTS.map(([key, label]) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.className = "seg " + key;
      item.append(swatch, document.createTextNode(label));
      return item;
    })
  );
}

function drawWaterfall() {
  const totals = voice.turns.map((m) => SEGMENTS.reduce((s, [k]) => s + (m[k] || 0), 0));
  const scale = Math.max(1, ...totals);
  $("waterfall").replaceChildren(
    ...voice.turns.map((m, i) => {
      const row = document.createElement("div");
      row.className = "turn";
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = "turn " + m.turn_id;
      const bar = document.createElement("div");
      bar.className = "bar";
      for (const [key, name] of SEGMENTS) {
        const seg = document.createElement("div");
        seg.className = "seg " + key;
        seg.style.width = (100 * (m[key] || 0)) / scale + "%";
        seg.title = `${name}: ${m[key] == null ? "—" : m[key] + " ms"}`;
        bar.append(seg);
      }
      const total = document.createElement("span");
      total.className = "total";
      const met = m.met_latency_target ? "✓" : "✗";
      total.textContent = `voice→voice ${m.voice_to_voice_ms ?? "—"} ms ${met}`;
      total.title = `response ${m.response_ms} ms, target ${m.latency_target_ms} ms`;
      row.append(label, bar, total);
      return row;
    })
  );
}

function setBusy(busy) {
  $("talk").disabled = busy;
  $("hangup").disabled = !busy;
  for (const id of ["pipeline", "agent", "transport", "webhook-url"]) $(id).disabled = busy;
}

// -- events (same shapes over WebRTC's data channel and the websocket) -------------------------
function onEvent(ev) {
  voice.events.push(ev);
  switch (ev.type) {
    case "state":
      $("state").textContent = ev.state;
      break;
    case "transcript":
      if (ev.text) caption("user", ev.text);
      break;
    case "agent_reply":
      if (ev.text) caption("agent", ev.text);
      break;
    case "interrupted":
      wsPlayer.flush();
      caption("agent", "(interrupted)", "interrupted");
      break;
    case "metrics":
      voice.turns.push(ev);
      drawWaterfall();
      break;
    case "error":
      showError(`${ev.code}: ${ev.message}`);
      break;
    case "closed":
      endCall(ev.reason || "closed", false);
      break;
  }
}

// -- sessions ---------------------------------------------------------------------------------
function agentSpec() {
  if ($("agent").value === "webhook") return { type: "webhook", url: $("webhook-url").value };
  return { type: "echo" };
}

async function createSession(transport, rate) {
  const resp = await fetch("/v1/sessions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      user_id: "web-" + Math.random().toString(36).slice(2, 10),
      transport,
      pipeline_type: $("pipeline").value,
      agent: agentSpec(),
      sample_rate_hz: rate,
      output_sample_rate_hz: rate,
      metadata: { client: "web page" },
    }),
  });
  const body = await resp.json();
  if (!resp.ok) throw new Error(`${body.error.code}: ${body.error.message}`);
  return body;
}

async function deleteSession(session) {
  if (session) await fetch("/v1/sessions/" + session.session_id, { method: "DELETE" });
}

// -- WebRTC -----------------------------------------------------------------------------------
function iceGatheringDone(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => pc.iceGatheringState === "complete" && resolve();
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // whatever was gathered by then
  });
}

function connected(pc, dc) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pc.connectionState === "connected" && dc.readyState === "open") resolve();
      if (pc.connectionState === "failed") reject(new Error("WebRTC connection failed"));
    };
    pc.addEventListener("connectionstatechange", check);
    dc.addEventListener("open", check);
    setTimeout(() => reject(new Error("WebRTC did not connect in time")), CONNECT_TIMEOUT_MS);
    check();
  });
}

async function startWebRtc(mic) {
  const session = await createSession("webrtc", 48000);
  voice.session = session;
  const pc = new RTCPeerConnection({ iceServers: session.media.ice_servers || [] });
  voice.pc = pc;
  for (const track of mic.getAudioTracks()) pc.addTrack(track, mic);
  const dc = pc.createDataChannel("events");
  voice.dc = dc;
  dc.onmessage = (msg) => onEvent(JSON.parse(msg.data));
  pc.ontrack = (e) => {
    const audio = $("remote-audio");
    audio.srcObject = e.streams[0] || new MediaStream([e.track]);
    audio.play().catch(() => {});
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringDone(pc);
    const resp = await fetch(session.media.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", token: session.media.token }),
    });
    const answer = await resp.json();
    if (!resp.ok) throw new Error(`${answer.error.code}: ${answer.error.message}`);
    await pc.setRemoteDescription(answer);
    await connected(pc, dc);
  } catch (err) {
    pc.close();
    voice.pc = voice.dc = null;
    await deleteSession(session);
    voice.session = null;
    throw err;
  }
  pc.addEventListener("connectionstatechange", () => {
    if (["failed", "closed"].includes(pc.connectionState)) endCall("connection " + pc.connectionState, false);
  });
}

// -- websocket fallback: PCM16 frames both ways -------------------------------------------------
const wsPlayer = {
  ctx: null, next: 0, sources: [],
  play(buf) {
    const pcm = new Int16Array(buf);
    const audio = this.ctx.createBuffer(1, pcm.length, this.ctx.sampleRate);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = this.ctx.createBufferSource();
    src.buffer = audio;
    src.connect(this.ctx.destination);
    this.next = Math.max(this.next, this.ctx.currentTime + 0.02);
    src.start(this.next);
    this.next += audio.duration;
    this.sources.push(src);
    src.onended = () => (this.sources = this.sources.filter((s) => s !== src));
  },
  flush() { // barge-in: drop every scheduled reply chunk
    for (const s of this.sources) try { s.stop(); } catch (e) {}
    this.sources = [];
    this.next = 0;
  },
};

async function startWebsocket(mic) {
  const ctx = new AudioContext();
  const rate = ctx.sampleRate;
  const session = await createSession("websocket", rate);
  voice.session = session;
  wsPlayer.ctx = ctx;
  // The session's own process serves its audio (media.url, on the session's node); a browser
  // that cannot reach that node uses the Serve port's route (media.fallback_url).
  const token = "?token=" + encodeURIComponent(session.media.token);
  const open = (url) =>
    new Promise((resolve, reject) => {
      const sock = new WebSocket(url + token);
      sock.binaryType = "arraybuffer";
      sock.onopen = () => resolve(sock);
      sock.onerror = () => reject(new Error("websocket failed"));
    });
  let ws;
  try {
    ws = await open(session.media.url);
  } catch (err) {
    if (!session.media.fallback_url) throw err;
    ws = await open(session.media.fallback_url);
  }
  voice.ws = ws;
  voice.mediaPath = session.media.fallback_url && ws.url.startsWith(session.media.fallback_url) ? "serve" : "direct";
  ws.onmessage = (msg) => {
    if (typeof msg.data === "string") onEvent(JSON.parse(msg.data));
    else wsPlayer.play(msg.data);
  };
  ws.onclose = () => endCall("websocket closed", false);
  const source = ctx.createMediaStreamSource(mic);
  const proc = ctx.createScriptProcessor(1024, 1, 1); // ~21 ms frames at 48 kHz
  proc.onaudioprocess = (e) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const f32 = e.inputBuffer.getChannelData(0);
    const pcm = new Int16Array(f32.length);
    for (let i = 0; i < f32.length; i++) pcm[i] = Math.max(-1, Math.min(1, f32[i])) * 32767;
    ws.send(pcm.buffer);
  };
  source.connect(proc);
  proc.connect(ctx.destination);
  voice.wsNodes = [source, proc];
}

// -- call lifecycle ---------------------------------------------------------------------------
async function startCall() {
  showError("");
  setBusy(true);
  voice.events = [];
  $("state").textContent = "connecting";
  try {
    const mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    });
    voice.mic = mic;
    const mode = $("transport").value;
    if (mode !== "websocket") {
      try {
        await startWebRtc(mic);
        voice.transport = "webrtc";
      } catch (err) {
        if (mode === "webrtc") throw err;
        showError("WebRTC failed (" + err.message + "); using the websocket");
      }
    }
    if (!voice.transport) {
      await startWebsocket(mic);
      voice.transport = "websocket";
    }
    $("transport-used").textContent = voice.transport;
    $("session-id").textContent = voice.session.session_id;
  } catch (err) {
    showError(err.message || String(err));
    endCall("failed", false);
  }
}

async function endCall(reason, hangup) {
  const { pc, dc, ws, session, mic } = voice;
  if (!session && !mic) return setBusy(false);
  Object.assign(voice, { pc: null, dc: null, ws: null, session: null, transport: null, mic: null });
  if (hangup && dc && dc.readyState === "open") dc.send(JSON.stringify({ type: "hangup" }));
  if (pc) setTimeout(() => pc.close(), 100);
  if (ws) {
    ws.onclose = null;
    ws.close();
    await deleteSession(session); // a websocket session outlives its socket: close it
  }
  if (mic) mic.getTracks().forEach((t) => t.stop());
  wsPlayer.flush();
  if (wsPlayer.ctx) wsPlayer.ctx.close();
  wsPlayer.ctx = null;
  $("state").textContent = reason === "failed" ? "idle" : "closed";
  $("transport-used").textContent = "—";
  setBusy(false);
  refreshHealth();
}

$("agent").addEventListener("change", () => {
  $("webhook-row").hidden = $("agent").value !== "webhook";
});
$("talk").addEventListener("click", startCall);
$("hangup").addEventListener("click", () => endCall("hung up", true));
window.addEventListener("beforeunload", () => endCall("page closed", true));
drawLegend();
refreshHealth();
setInterval(refreshHealth, 2000);
