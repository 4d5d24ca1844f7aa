// vistok demo page: upload an image, encode it once with all tokens, then decode any prefix (the tokens are
// coarse-to-fine, so the first k tokens of the full encoding are its k-token encoding). Plain JS, no build step.
"use strict";
const $ = (id) => document.getElementById(id);
// With `vistok serve --api-key`, the key comes from the page's #key=... fragment (never sent to the server) or
// from the key box shown after a 401; it is kept for this tab only (sessionStorage).
let key = new URLSearchParams(location.hash.slice(1)).get("key") || sessionStorage.getItem("vistokKey") || "";
let info = null, tokens = [], generation = 0;

function showError(msg) { $("error").textContent = msg || ""; }

async function api(path, options) {
  const auth = key ? { Authorization: "Bearer " + key } : {};
  const r = await fetch(path, { ...options, headers: { ...auth, ...(options && options.headers) } });
  if (r.status === 401) $("keybox").hidden = false;
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

async function loadInfo() {
  info = await (await api("/v1/info")).json();
  const m = info.model;
  $("model").textContent = `Model: ${m.image_size}x${m.image_size} px, 1..${m.max_tokens} tokens, ` +
    `${m.codebook_size} codes (${m.bits_per_token} bits per token), ${m.decoder} decoder.`;
  $("k").max = m.max_tokens;
  $("k").value = Math.min(m.max_tokens, 8);
  $("kval").textContent = $("k").value;
}

async function encode(file) {
  showError("");
  const form = new FormData();
  form.append("image", file);
  const out = await (await api("/v1/encode", { method: "POST", body: form })).json();
  tokens = out.tokens;
  const s = out.source;
  $("resized").textContent = out.resized ? `(resized from ${s.width}x${s.height})` : "";
  // Show the original as the model sees it: the server's crop is the centre square, resized.
  $("original").src = URL.createObjectURL(file);
  $("k").disabled = false;
  await decode();
}

async function decode() {
  if (!tokens.length) return;
  const k = Number($("k").value);
  $("kval").textContent = k;
  const ids = tokens.slice(0, k);
  const mine = ++generation;
  const r = await api("/v1/decode", { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify({ tokens: ids }) });
  const blob = await r.blob();
  if (mine !== generation) return;  // a newer slider position already asked
  const old = $("recon").src;
  $("recon").src = URL.createObjectURL(blob);
  if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
  $("nk").textContent = k;
  $("bytes").textContent = (k * info.model.bits_per_token / 8).toFixed(1);
  $("tokens").textContent = ids.join(" ");
  document.body.dataset.decoded = String(k);  // for tests: which k the shown reconstruction belongs to
}

function handle(p) { p.catch((e) => showError(e.message)); }

$("file").addEventListener("change", (e) => { if (e.target.files[0]) handle(encode(e.target.files[0])); });
$("k").addEventListener("input", () => { $("kval").textContent = $("k").value; });
$("k").addEventListener("change", () => handle(decode()));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files[0]) handle(encode(e.dataTransfer.files[0]));
});
$("keyform").addEventListener("submit", (e) => {
  e.preventDefault();
  key = $("key").value.trim();
  sessionStorage.setItem("vistokKey", key);
  $("keybox").hidden = true;
  showError("");
  handle(loadInfo());
});
handle(loadInfo());
