// The chat page of `realm web`: pick the default model or drop a GGUF, pick a
// device, chat with streaming output. Everything runs in this browser through
// the JS SDK (js-sdk/src, served under /js-sdk/), in a worker.

const $ = (id) => document.getElementById(id);
const DEFAULT_URL = new URL("models/default.gguf", location.href).href;

const state = {
  sdk: null,          // the JS SDK module
  realm: null,        // the loaded Realm (worker mode)
  loading: false,
  generating: false,
  abort: null,        // AbortController of the running reply
  file: null,         // a dropped/chosen GGUF
  gpu: undefined,     // a WebGPU adapter was found (set once probed)
  history: [],        // [{role, content}]
  replies: 0,
};
window.chatApp = state;  // for tests and the console

function setStatus(text, kind = "") {
  const el = $("status");
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
}

const fmtMB = (n) => (n / 1e6).toFixed(n < 1e7 ? 1 : 0) + " MB";
const fmtS = (s) => (s < 1 ? (s * 1000).toFixed(0) + " ms" : s.toFixed(2) + " s");

function updateButtons() {
  const ready = !!state.realm && !state.loading;
  $("send").disabled = !ready || state.generating;
  $("stop").disabled = !state.generating;
  $("load").disabled = state.loading || state.generating || !state.sdk;
}

// ------------------------------------------------------------ model choice
function choose(which) {
  $(which === "file" ? "model-drop" : "model-default").checked = true;
  $("choice-default").classList.toggle("selected", which !== "file");
  $("drop-zone").classList.toggle("selected", which === "file");
}

function takeFile(file) {
  if (!file) return;
  state.file = file;
  $("file-meta").textContent = `${file.name} (${fmtMB(file.size)})`;
  choose("file");
}

$("model-default").addEventListener("change", () => choose("default"));
$("model-drop").addEventListener("change", () => choose("file"));
$("model-file").addEventListener("change", (e) => takeFile(e.target.files[0]));
for (const ev of ["dragenter", "dragover"]) {
  document.addEventListener(ev, (e) => { e.preventDefault(); $("drop-zone").classList.add("dragover"); });
}
for (const ev of ["dragleave", "drop"]) {
  document.addEventListener(ev, (e) => { e.preventDefault(); $("drop-zone").classList.remove("dragover"); });
}
document.addEventListener("drop", (e) => takeFile(e.dataTransfer?.files?.[0]));

async function probeDevices() {
  const opt = $("device-webgpu");
  let ok = false;
  try { ok = !!(navigator.gpu && (await navigator.gpu.requestAdapter())); } catch { ok = false; }
  if (!ok) {
    opt.disabled = true;
    opt.textContent = "WebGPU (not available here)";
  }
  state.gpu = ok;
  return ok;
}

// ------------------------------------------------------------------ loading
async function loadModel() {
  if (state.loading || state.generating) return;
  const useFile = $("model-drop").checked;
  if (useFile && !state.file) { setStatus("choose or drop a .gguf file first", "error"); return; }
  const source = useFile ? state.file : DEFAULT_URL;
  const label = useFile ? state.file.name : "the default model";
  const device = $("device").value;
  state.loading = true;
  updateButtons();
  $("progress-wrap").hidden = false;
  $("progress").value = 0;
  $("progress-text").textContent = "";
  setStatus(`loading ${label}…`);
  const t0 = performance.now();
  try {
    if (state.realm) {
      const old = state.realm;
      state.realm = null;
      await old.unload();
    }
    const onProgress = ({ loaded, total }) => {
      if (!total) return;
      $("progress").max = total;
      $("progress").value = loaded;
      $("progress-text").textContent = `${fmtMB(loaded)} / ${fmtMB(total)} (${Math.floor((100 * loaded) / total)}%)`;
    };
    let realm, gpuFailure = null;
    try {
      realm = await state.sdk.Realm.load(source, { device, worker: true, onProgress });
    } catch (e) {
      if (device === "cpu") throw e;
      // the GPU path failed (no adapter, a kernel the driver refuses, limits): the CPU still works
      console.warn("WebGPU load failed, falling back to the CPU:", e);
      gpuFailure = e.message || String(e);
      setStatus(`WebGPU failed (${gpuFailure}); loading on the CPU…`);
      realm = await state.sdk.Realm.load(source, { device: "cpu", worker: true, onProgress });
    }
    const secs = (performance.now() - t0) / 1000;
    state.realm = realm;
    state.history = [];
    $("messages").replaceChildren(Object.assign(document.createElement("div"), {
      className: "empty", id: "empty", textContent: "Say something.",
    }));
    $("progress").value = $("progress").max;
    let name = realm.id || label;
    try {
      const meta = await realm.metadata();
      if (meta["general.name"]) name = `${meta["general.name"]} (${name})`;
    } catch { /* the file name will do */ }
    const dev = realm.device || device;
    $("stat-device").textContent = dev + (dev !== device ? ` (asked ${device})` : "");
    $("stat-load").textContent = fmtS(secs) + (realm.fromCache ? " (cached)" : "");
    const note = gpuFailure ? `WebGPU failed: ${gpuFailure}` : realm.deviceNote;
    setStatus(`ready: ${name} on ${dev}` + (note ? ` — ${note}` : ""), "ok");
    $("input").focus();
  } catch (e) {
    console.error(e);
    setStatus(`could not load ${label}: ${e.message || e}`, "error");
  } finally {
    state.loading = false;
    updateButtons();
  }
}

// --------------------------------------------------------------------- chat
function bubble(role, text = "") {
  $("empty")?.remove();
  const el = document.createElement("div");
  el.className = `msg ${role}`;
  el.textContent = text;
  $("messages").appendChild(el);
  $("messages").scrollTop = $("messages").scrollHeight;
  return el;
}

function showStats({ tokens, genTps, promptTps, ttft }) {
  $("stat-tokens").textContent = tokens ?? "–";
  $("stat-tps").textContent = genTps ? genTps.toFixed(1) : "–";
  $("stat-prompt").textContent = promptTps ? promptTps.toFixed(1) : "–";
  $("stat-ttft").textContent = ttft != null ? fmtS(ttft) : "–";
}

async function send() {
  const text = $("input").value.trim();
  if (!text || !state.realm || state.generating) return;
  $("input").value = "";
  state.history.push({ role: "user", content: text });
  bubble("user", text);
  const out = bubble("assistant");
  out.classList.add("streaming");
  const body = document.createTextNode("");
  out.appendChild(body);
  state.generating = true;
  state.abort = new AbortController();
  updateButtons();
  if ("lastStats" in state.realm) state.realm.lastStats = null;  // only this reply's stats count
  const t0 = performance.now();
  let tFirst = null, pieces = 0, usage = null, finish = null, reply = "";
  try {
    const stream = await state.realm.chat.completions.create({
      messages: state.history, stream: true, signal: state.abort.signal,
      max_tokens: +$("max-tokens").value || 256, temperature: +$("temperature").value,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const c = chunk.choices?.[0];
      if (!c) continue;
      if (c.finish_reason) finish = c.finish_reason;
      const piece = c.delta?.content;
      if (!piece) continue;
      const now = performance.now();
      if (tFirst === null) tFirst = now;
      pieces++;
      reply += piece;
      body.data = reply;
      $("messages").scrollTop = $("messages").scrollHeight;
      const el = (now - tFirst) / 1000;
      showStats({ tokens: pieces, genTps: el > 0 ? (pieces - 1) / el : 0, ttft: (tFirst - t0) / 1000 });
    }
  } catch (e) {
    if (e?.name === "AbortError" || state.abort.signal.aborted) finish = "stopped";
    else { finish = "error"; out.classList.add("error"); body.data = reply + (reply ? "\n" : "") + `error: ${e.message || e}`; }
  } finally {
    const tEnd = performance.now();
    out.classList.remove("streaming");
    state.generating = false;
    state.abort = null;
    state.replies++;
    if (reply) state.history.push({ role: "assistant", content: reply });
    else if (finish !== "error") state.history.pop();  // nothing said: forget the question
    const gen = usage?.completion_tokens ?? pieces;
    const genSecs = tFirst !== null ? (tEnd - tFirst) / 1000 : 0;
    const ttft = tFirst !== null ? (tFirst - t0) / 1000 : null;
    const fresh = usage ? usage.prompt_tokens - (usage.prompt_tokens_details?.cached_tokens ?? 0) : null;
    const st = state.realm?.lastStats;
    const genTps = st?.generate_tps || (genSecs > 0 && gen > 1 ? (gen - 1) / genSecs : 0);
    const promptTps = st?.prompt_tps || (fresh && ttft ? fresh / ttft : 0);
    showStats({ tokens: gen, genTps, promptTps, ttft });
    const foot = document.createElement("span");
    foot.className = "foot";
    foot.textContent = `${gen} tokens · ${genTps ? genTps.toFixed(1) + " tok/s" : "–"} · ${finish ?? "done"}`;
    out.appendChild(foot);
    out.dataset.finish = finish ?? "done";
    updateButtons();
    $("input").focus();
  }
}

function stop() {
  if (state.abort) state.abort.abort();
}

$("load").addEventListener("click", loadModel);
$("send").addEventListener("click", send);
$("stop").addEventListener("click", stop);
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
});

// ---------------------------------------------------------------------- boot
(async () => {
  updateButtons();
  probeDevices();
  fetch(DEFAULT_URL, { method: "HEAD" }).then((r) => {
    if (r.ok) $("default-meta").textContent += ` · ${fmtMB(Number(r.headers.get("Content-Length")))}`;
    else { $("default-meta").textContent = "not available from this server"; }
  }).catch(() => {});
  try {
    state.sdk = await import("./js-sdk/src/index.js");
    setStatus("no model loaded — pick one and press Load");
  } catch (e) {
    console.error(e);
    setStatus(`the JS SDK did not load: ${e.message || e}`, "error");
  }
  updateButtons();
  if (new URLSearchParams(location.search).has("autoload")) loadModel();
})();
