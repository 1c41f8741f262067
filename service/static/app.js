// The page of `python -m training.serve`: send each picture to /v1/explain, show the answer and its heat map.
"use strict";

const PARALLEL = 2;        // pictures in flight at once; the server turns away more than it can take
const MAX_RETRIES = 5;     // after a 503 (server busy), wait Retry-After and try again
const MAX_CANVAS = 1024;   // the heat map canvas' long side, in canvas pixels

const queue = [];
let running = 0;

function el(card, selector) { return card.querySelector(selector); }

function percent(p) { return (p * 100).toFixed(1) + "%"; }

async function describeModel() {
  const line = document.getElementById("model");
  try {
    const response = await fetch("/v1/model");
    const info = await response.json();
    const report = info.report && info.report.accuracy != null
      ? ` · test accuracy ${info.report.accuracy.toFixed(3)} on ${info.report.count} images` : "";
    const name = info.name === info.arch ? info.arch : `${info.name} (${info.arch})`;
    line.textContent = `Model ${name}, id ${info.model_id.slice(0, 12)} · ` +
      `threshold ${info.threshold} · input ${info.input.size}×${info.input.size} (${info.input.fit})${report}`;
  } catch (err) {
    line.textContent = "The model description could not be loaded.";
  }
}

function addCard(file) {
  const card = document.getElementById("card").content.firstElementChild.cloneNode(true);
  const img = el(card, "img");
  img.src = URL.createObjectURL(file);
  img.alt = file.name || "pasted picture";
  el(card, ".name").textContent = file.name || "pasted picture";
  card.tabIndex = 0;
  el(card, ".show-heat").addEventListener("change", (event) => {
    el(card, "canvas").classList.toggle("hidden", !event.target.checked);
  });
  document.getElementById("results").prepend(card);
  return card;
}

function showError(card, text) {
  const status = el(card, ".status");
  status.textContent = text;
  status.classList.add("error");
  card.setAttribute("aria-label", `${el(card, ".name").textContent}: ${text}`);
}

function drawHeatmap(canvas, heatmap, width, height) {
  const scale = Math.min(1, MAX_CANVAS / Math.max(width, height));
  canvas.width = Math.max(1, Math.round(width * scale));
  canvas.height = Math.max(1, Math.round(height * scale));
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const { grid, drops, region } = heatmap;
  const top = heatmap.max_abs_drop || 1;
  const edge = (k) => region.side * k / grid;
  for (let i = 0; i < grid; i++) {
    for (let j = 0; j < grid; j++) {
      const d = drops[i][j];
      if (d === 0) continue;
      const alpha = 0.7 * Math.min(1, Math.abs(d) / top);
      ctx.fillStyle = d > 0 ? `rgba(230, 40, 20, ${alpha})` : `rgba(20, 90, 230, ${alpha})`;
      const x0 = (region.left + edge(j)) * scale, y0 = (region.top + edge(i)) * scale;
      const x1 = (region.left + edge(j + 1)) * scale, y1 = (region.top + edge(i + 1)) * scale;
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    }
  }
}

function showResult(card, data) {
  const r = data.result;
  if (!r.ok) {
    showError(card, `Not scored: ${r.error.reason} (${r.error.meaning})`);
    return;
  }
  const p = r.meme_probability;
  const bar = el(card, ".bar");
  bar.setAttribute("aria-valuenow", (p * 100).toFixed(1));
  el(bar, ".fill").style.width = percent(p);
  el(bar, ".fill").classList.toggle("meme", r.label === "meme");
  el(bar, ".mark").style.left = percent(r.threshold);
  const prob = el(card, ".probability");
  prob.textContent = `meme probability ${percent(p)}`;
  prob.dataset.probability = String(p);
  const label = el(card, ".label");
  label.textContent = r.label === "meme" ? "Meme" : "Not a meme";
  label.className = `label ${r.label}`;
  const pre = r.preprocessing;
  el(card, ".frame").style.aspectRatio = `${pre.source_width} / ${pre.source_height}`;
  el(card, ".status").textContent =
    `${pre.source_width}×${pre.source_height} ${pre.format || ""}, threshold ${r.threshold}, ${Math.round(data.total_ms)} ms`;
  drawHeatmap(el(card, "canvas"), data.heatmap, pre.source_width, pre.source_height);
  card.classList.add("done");
  card.setAttribute("aria-label",
    `${el(card, ".name").textContent}: ${label.textContent}, meme probability ${percent(p)}`);
}

async function explain(card, file) {
  for (let attempt = 0; ; attempt++) {
    const body = new FormData();
    body.append("files", file, file.name || "pasted.png");
    let response;
    try {
      response = await fetch("/v1/explain", { method: "POST", body });
    } catch (err) {
      showError(card, "The server could not be reached.");
      return;
    }
    if (response.status === 503 && attempt < MAX_RETRIES) {
      const wait = Number(response.headers.get("Retry-After")) || 1;
      el(card, ".status").textContent = `Server busy, retrying in ${wait} s…`;
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      continue;
    }
    let data = null;
    try { data = await response.json(); } catch (err) { /* not JSON: reported below */ }
    if (!response.ok) {
      showError(card, `Refused (${response.status}): ${data && data.detail ? data.detail : response.statusText}`);
      return;
    }
    showResult(card, data);
    return;
  }
}

function pump() {
  while (running < PARALLEL && queue.length) {
    const { card, file } = queue.shift();
    running++;
    explain(card, file).finally(() => { running--; pump(); });
  }
}

function addFiles(files) {
  for (const file of files) {
    queue.push({ card: addCard(file), file });
  }
  pump();
}

document.addEventListener("DOMContentLoaded", () => {
  describeModel();
  const input = document.getElementById("files");
  input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
  const zone = document.getElementById("drop");
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    document.addEventListener(type, () => zone.classList.remove("over"));
  }
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) addFiles(event.dataTransfer.files);
  });
  document.addEventListener("paste", (event) => {
    const files = event.clipboardData ? [...event.clipboardData.files] : [];
    if (files.length) { event.preventDefault(); addFiles(files); }
  });
});
