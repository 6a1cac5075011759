// simexplain's page: plain JavaScript, no libraries, talks only to this server's JSON API.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const DEFAULT_METHODS = ["interaction-cam"];
const state = { files: [null, null], methods: [], job: null, polling: null, answer: null, models: [] };

// The jet colour map (the paper's figures), as stops interpolated linearly.
const JET = [[0, [0, 0, 127]], [0.125, [0, 0, 255]], [0.375, [0, 255, 255]],
             [0.625, [255, 255, 0]], [0.875, [255, 0, 0]], [1, [127, 0, 0]]];

function jet(t) {
  for (let i = 1; i < JET.length; i++) {
    const [t1, c1] = JET[i];
    if (t <= t1) {
      const [t0, c0] = JET[i - 1];
      const f = (t - t0) / (t1 - t0);
      return c0.map((v, k) => Math.round(v + f * (c1[k] - v)));
    }
  }
  return JET[JET.length - 1][1];
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    const retry = response.headers.get("Retry-After");
    throw new Error(retry ? `${message} (retry in ${retry} s)` : message);
  }
  return body;
}

// ---------------------------------------------------------------------------------------- images
function setFile(slot, file) {
  state.files[slot] = file;
  const drop = $(`#drop${slot + 1}`);
  const img = $("img", drop);
  img.src = URL.createObjectURL(file);
  img.alt = `image ${slot + 1}: ${file.name}`;
  img.hidden = false;
  $(".hint", drop).textContent = file.name;
}

function wireDrop(slot) {
  const drop = $(`#drop${slot + 1}`);
  const input = $("input", drop);
  input.addEventListener("change", () => input.files[0] && setFile(slot, input.files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/"));
    if (file) setFile(slot, file);
  });
}

async function useSample() {
  const blob = await (await fetch("/api/samples/chelsea.jpg")).blob();
  const bitmap = await createImageBitmap(blob);
  // Image 2: a mirrored crop of the same photo, a view the model should find similar.
  const canvas = document.createElement("canvas");
  const w = Math.round(bitmap.width * 0.7), h = Math.round(bitmap.height * 0.7);
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.translate(w, 0);
  ctx.scale(-1, 1);
  ctx.drawImage(bitmap, bitmap.width * 0.15, bitmap.height * 0.1, w, h, 0, 0, w, h);
  const view = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  setFile(0, new File([blob], "chelsea.jpg", { type: "image/jpeg" }));
  setFile(1, new File([view], "chelsea-mirrored-crop.jpg", { type: "image/jpeg" }));
}

// ---------------------------------------------------------------------------------------- form
function paramInput(method, key, value) {
  const row = document.createElement("label");
  row.className = "param";
  const name = document.createElement("span");
  name.textContent = key;
  const input = document.createElement("input");
  input.dataset.method = method;
  input.dataset.key = key;
  if (typeof value === "boolean") {
    input.type = "checkbox";
    input.checked = value;
    input.dataset.kind = "bool";
  } else if (typeof value === "number") {
    input.type = "number";
    input.step = "any";
    input.value = String(value);
    input.dataset.kind = "number";
  } else {
    input.type = "text";
    input.value = value === null ? "" : (typeof value === "string" ? value : JSON.stringify(value));
    input.placeholder = value === null ? "automatic" : "";
    input.dataset.kind = "text";
  }
  input.dataset.initial = input.type === "checkbox" ? String(input.checked) : input.value;
  row.append(name, input);
  return row;
}

function methodRow(method) {
  const row = document.createElement("div");
  row.className = "method-row";
  row.dataset.search = `${method.name} ${method.description}`.toLowerCase();
  const label = document.createElement("label");
  label.className = "check";
  label.title = method.description;
  const box = document.createElement("input");
  box.type = "checkbox";
  box.name = "method";
  box.value = method.name;
  box.checked = DEFAULT_METHODS.includes(method.name);
  label.append(box, document.createTextNode(" " + method.name));
  row.append(label);
  const keys = Object.keys(method.parameters);
  if (keys.length) {
    const details = document.createElement("details");
    details.className = "settings";
    const summary = document.createElement("summary");
    summary.textContent = "settings";
    const about = document.createElement("p");
    about.className = "note";
    about.textContent = method.description;
    details.append(summary, about, ...keys.map((k) => paramInput(method.name, k, method.parameters[k])));
    row.append(details);
  }
  return row;
}

// Rows under a heading each time the heading changes (the server lists methods in order).
function appendGrouped(box, methods, heading) {
  let current = null;
  for (const method of methods) {
    if (heading(method) !== current) {
      current = heading(method);
      const head = document.createElement("div");
      head.className = "family";
      head.textContent = current;
      box.append(head);
    }
    box.append(methodRow(method));
  }
}

// simexplain's own methods (the paper's) first, by family; the external libraries' (captum:, grad-cam:) in a
// collapsed "more methods" group with a filter box.
function renderMethods(methods) {
  const own = methods.filter((m) => !m.library), external = methods.filter((m) => m.library);
  const box = $("#methods");
  box.replaceChildren();
  appendGrouped(box, own, (m) => m.family);
  const more = $("#more-methods");
  more.hidden = !external.length;
  $("#more-count").textContent = `${external.length} from ${[...new Set(external.map((m) => m.library))].join(", ")}`;
  const list = $("#more-list");
  list.replaceChildren();
  appendGrouped(list, external, (m) => `${m.library} · ${m.family}`);
}

function filterMoreMethods() {
  const words = $("#method-filter").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  for (const row of document.querySelectorAll("#more-list .method-row")) {
    const chosen = $("input[name=method]", row).checked;
    row.hidden = !chosen && !words.every((word) => row.dataset.search.includes(word));
  }
  // A heading stays only while a row under it is shown.
  for (const head of document.querySelectorAll("#more-list .family")) {
    let next = head.nextElementSibling, shown = false;
    while (next && !next.classList.contains("family")) { shown ||= !next.hidden; next = next.nextElementSibling; }
    head.hidden = !shown;
  }
}

function chosenMethods() {
  return [...document.querySelectorAll("input[name=method]:checked")].map((input) => input.value);
}

function changedParams(methods) {
  const params = {};
  for (const input of document.querySelectorAll(".param input")) {
    if (!methods.includes(input.dataset.method)) continue;
    const now = input.type === "checkbox" ? String(input.checked) : input.value;
    if (now === input.dataset.initial) continue;
    const key = `${input.dataset.method}.${input.dataset.key}`;
    params[key] = input.type === "checkbox" ? input.checked : now;
  }
  return params;
}

// ---------------------------------------------------------------------------------------- running
function setBusy(busy) {
  $("#explain").disabled = busy;
  $("#explain").textContent = busy ? "Explaining…" : "Explain";
  $("#cancel").hidden = !busy;
  $("#progress-box").hidden = !busy;
  $("#empty").hidden = busy || Boolean(state.answer);
}

// A model served with its text tower compares an image with a text: the text box takes image 2's place and
// only the methods with an image–text form are offered.
function textModel() {
  const model = state.models.find((m) => m.name === $("#model").value);
  return Boolean(model && model.text);
}

function applyModelKind() {
  const text = textModel();
  $("#drop2").hidden = text;
  $("#text-box").hidden = !text;
  $("#more-methods").hidden = text || !state.methods.some((m) => m.library);
  for (const row of document.querySelectorAll(".method-row")) {
    const method = state.methods.find((m) => m.name === $("input[name=method]", row).value);
    const usable = !text || (method && method.text);
    row.hidden = !usable;
    if (!usable) $("input[name=method]", row).checked = false;
  }
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const text = textModel() ? $("#text").value.trim() : null;
  if (!state.files[0] || (text === null && !state.files[1])) {
    showError(text === null ? "Choose two images first (or use the bundled pair)." : "Choose an image first.");
    return;
  }
  if (text === "") {
    showError("Write the text to compare the image with.");
    return;
  }
  const methods = chosenMethods();
  if (!methods.length) {
    showError("Choose at least one method.");
    return;
  }
  const form = new FormData();
  form.append("image1", state.files[0], state.files[0].name);
  if (text === null) form.append("image2", state.files[1], state.files[1].name);
  else form.append("text", text);
  form.append("model", $("#model").value);
  form.append("methods", methods.join(","));
  form.append("params", JSON.stringify(changedParams(methods)));
  if ($("#metrics").checked) form.append("metrics", "all");
  setBusy(true);
  if (window.matchMedia("(max-width: 760px)").matches) $("#results").scrollIntoView({ behavior: "smooth" });
  $("#progress").value = 0;
  $("#stage").textContent = "uploading";
  try {
    const job = await getJSON("/api/jobs", { method: "POST", body: form });
    state.job = job.id;
    poll();
  } catch (error) {
    setBusy(false);
    showError(error.message);
  }
}

async function poll() {
  if (!state.job) return;
  try {
    const job = await getJSON(`/api/jobs/${encodeURIComponent(state.job)}`);
    $("#progress").value = job.progress;
    $("#stage").textContent = `${job.stage} · ${Math.round(job.progress * 100)}%`;
    if (job.state === "done") {
      state.job = null;
      setBusy(false);
      showAnswer(job.result);
    } else if (job.state === "failed" || job.state === "cancelled") {
      state.job = null;
      setBusy(false);
      showError(job.state === "cancelled" ? "Cancelled." : job.error);
    } else {
      state.polling = setTimeout(poll, 250);
    }
  } catch (error) {
    state.job = null;
    setBusy(false);
    showError(error.message);
  }
}

async function cancel() {
  if (!state.job) return;
  $("#stage").textContent = "cancelling…";
  try { await getJSON(`/api/jobs/${encodeURIComponent(state.job)}`, { method: "DELETE" }); }
  catch (error) { showError(error.message); }
}

// ---------------------------------------------------------------------------------------- the answer
function drawMap(canvas, grid) {
  const h = grid.length, w = grid[0].length;
  let low = Infinity, high = -Infinity;
  for (const row of grid) for (const v of row) { if (v < low) low = v; if (v > high) high = v; }
  const span = high - low;
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  const ctx = small.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const t = span > 0 ? (grid[y][x] - low) / span : 0;
      const [r, g, b] = jet(t);
      const i = 4 * (y * w + x);
      // Low values half see-through, so sparse pixel maps do not hide the image under a blue veil.
      image.data[i] = r; image.data[i + 1] = g; image.data[i + 2] = b; image.data[i + 3] = Math.round(255 * (0.45 + 0.55 * t));
    }
  }
  ctx.putImageData(image, 0, 0);
  const out = canvas.getContext("2d");
  out.imageSmoothingEnabled = true;
  out.imageSmoothingQuality = "high";
  out.clearRect(0, 0, canvas.width, canvas.height);
  // Pixel-level maps are speckled: a light blur for display (the downloads and JSON keep the raw maps).
  const blur = $("#smooth").checked && w >= 56 ? Math.max(1, canvas.width / 80) : 0;
  out.filter = blur ? `blur(${blur}px)` : "none";
  out.drawImage(small, 0, 0, canvas.width, canvas.height);
  out.filter = "none";
}

function drawImage(canvas, bitmap) {
  canvas.width = bitmap.width; canvas.height = bitmap.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
}

function format(value, digits = 3) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}

function seconds(value) {
  return value < 1 ? `${Math.max(1, Math.round(value * 1000))} ms` : `${value.toFixed(value < 10 ? 1 : 0)} s`;
}

// The six pair metrics (and MS when asked for); the per-image parts stay in the JSON download.
const MAIN_METRICS = ["SI", "SD", "CI", "CD", "SAD", "CAD", "MS", "WI", "WD"];

function metricsTable(table, metrics) {
  if (!metrics || !metrics.mean) return;
  const head = $("thead tr", table), body = $("tbody tr", table);
  for (const name of MAIN_METRICS.filter((key) => key in metrics.mean)) {
    const value = metrics.mean[name];
    const th = document.createElement("th");
    th.textContent = name;
    const td = document.createElement("td");
    td.textContent = format(value);
    head.append(th); body.append(td);
  }
  table.hidden = false;
}

async function showAnswer(answer) {
  state.answer = answer;
  $("#empty").hidden = true;
  $("#answer").hidden = false;
  $("#score").textContent = format(answer.score, 4);
  $("#score-model").textContent = `${answer.model} on ${answer.device}`;
  $("#dl-png").href = answer.figures.png;
  $("#dl-svg").href = answer.figures.svg;
  $("#dl-json").href = answer.figures.json;
  const bitmaps = await Promise.all(answer.inputs.map(async (url) => createImageBitmap(await (await fetch(url)).blob())));
  const cards = $("#cards");
  cards.replaceChildren();
  for (const e of answer.explanations) {
    const card = $("#card").content.firstElementChild.cloneNode(true);
    $(".method", card).textContent = e.method;
    $(".meta", card).textContent = `${seconds(e.seconds)}`;
    $(".meta", card).title = `seconds this method took; the pair's score ${format(e.score, 4)}`;
    if (answer.text !== undefined) {
      showImageText(card, e, bitmaps[0], answer);
      metricsTable($(".metrics", card), e.metrics);
      cards.append(card);
      continue;
    }
    card.querySelectorAll("figure").forEach((figure, k) => {
      drawImage($(".base", figure), bitmaps[k]);
      const overlay = $(".overlay", figure);
      overlay.width = bitmaps[k].width; overlay.height = bitmaps[k].height;
      drawMap(overlay, k === 0 ? e.map1 : e.map2);
      overlay.setAttribute("role", "img");
      overlay.setAttribute("aria-label", `${e.method} map over image ${k + 1}`);
      $("figcaption", figure).textContent = answer.images[k];
    });
    metricsTable($(".metrics", card), e.metrics);
    if (e.interaction) wireMatching(card, e);
    cards.append(card);
  }
  applyOpacity();
  $("#results-title").focus?.();
}

// An image and a text: the image with the method's map, the words coloured by their scores (red raises the
// score, blue lowers it). With pair-interaction, pressing a word shows the regions that match it.
function wordColor(value, scale) {
  const t = scale > 0 ? Math.max(-1, Math.min(1, value / scale)) : 0;
  const [r, g, b] = t >= 0 ? [255, Math.round(255 * (1 - t)), Math.round(255 * (1 - t))]
    : [Math.round(255 * (1 + t)), Math.round(255 * (1 + t)), 255];
  return { background: `rgb(${r}, ${g}, ${b})`, ink: Math.abs(t) > 0.6 ? "#fff" : "#000" };
}

function showImageText(card, e, bitmap, answer) {
  const figures = card.querySelectorAll("figure");
  figures[1].hidden = true;
  const figure = figures[0];
  drawImage($(".base", figure), bitmap);
  const overlay = $(".overlay", figure);
  overlay.width = bitmap.width; overlay.height = bitmap.height;
  if (e.map1) drawMap(overlay, e.map1);
  overlay.setAttribute("role", "img");
  overlay.setAttribute("aria-label", `${e.method} map over the image`);
  $("figcaption", figure).textContent = answer.images[0];
  const box = $(".words", card);
  box.hidden = false;
  box.setAttribute("aria-label", `the text's words${e.word_scores ? " coloured by their scores" : ""}`);
  const scores = e.word_scores || [];
  const scale = Math.max(0, ...scores.map((v) => Math.abs(v)));
  e.words.forEach((word, k) => {
    const item = document.createElement("button");
    item.type = "button";
    item.textContent = word;
    if (e.word_scores) {
      const { background, ink } = wordColor(scores[k], scale);
      item.style.background = background;
      item.style.color = ink;
      item.title = `score ${format(scores[k], 4)}`;
    }
    if (e.interaction_words) {
      item.setAttribute("aria-pressed", "false");
      item.addEventListener("click", () => matchWord(box, overlay, e, k, item));
    } else {
      item.disabled = !e.word_scores;
    }
    box.append(item);
  });
}

// The regions that match word k (the sum of its tokens' columns of I[y][x][token]); pressed again: the map.
function matchWord(box, overlay, e, k, item) {
  const pressed = item.getAttribute("aria-pressed") === "true";
  box.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", "false"));
  if (pressed) { drawMap(overlay, e.map1); return; }
  item.setAttribute("aria-pressed", "true");
  const tokens = e.token_words || null;
  const grid = e.interaction_words.map((row) => row.map((cell) =>
    cell.reduce((sum, v, t) => sum + ((tokens ? tokens[t] === k : false) ? v : 0), 0)));
  drawMap(overlay, grid);
}

// pair-interaction: a click on one image shows what that point matches on the other (a row or a column of
// I[y1][x1][y2][x2]); a second click on the same point, or Escape, goes back to the two marginal maps.
function matchSlice(interaction, side, fx, fy) {
  if (side === 0) {
    const h = interaction.length, w = interaction[0].length;
    return interaction[Math.min(h - 1, Math.floor(fy * h))][Math.min(w - 1, Math.floor(fx * w))];
  }
  const h = interaction[0][0].length, w = interaction[0][0][0].length;
  const y = Math.min(h - 1, Math.floor(fy * h)), x = Math.min(w - 1, Math.floor(fx * w));
  return interaction.map((line) => line.map((cell) => cell[y][x]));
}

function drawMarker(canvas, fx, fy) {
  const ctx = canvas.getContext("2d");
  const r = Math.max(4, canvas.width / 40);
  ctx.lineWidth = Math.max(2, r / 3);
  ctx.strokeStyle = "#fff";
  ctx.beginPath();
  ctx.arc(fx * canvas.width, fy * canvas.height, r, 0, 2 * Math.PI);
  ctx.stroke();
}

function wireMatching(card, e) {
  const overlays = [...card.querySelectorAll(".overlay")];
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.textContent = "Click a point on either image to see what it matches on the other; Escape shows both maps again.";
  $(".meta", card).after(hint);
  let shown = null;
  const reset = () => {
    shown = null;
    drawMap(overlays[0], e.map1);
    drawMap(overlays[1], e.map2);
  };
  overlays.forEach((overlay, side) => {
    overlay.style.cursor = "crosshair";
    overlay.tabIndex = 0;
    overlay.addEventListener("click", (event) => {
      const rect = overlay.getBoundingClientRect();
      const fx = (event.clientX - rect.left) / rect.width, fy = (event.clientY - rect.top) / rect.height;
      const key = `${side}:${fx.toFixed(2)}:${fy.toFixed(2)}`;
      if (shown === key) { reset(); return; }
      shown = key;
      drawMap(overlays[1 - side], matchSlice(e.interaction, side, fx, fy));
      drawMap(overlay, side === 0 ? e.map1 : e.map2);
      drawMarker(overlay, fx, fy);
      overlays[1 - side].dataset.matching = "true";
    });
    overlay.addEventListener("keydown", (event) => { if (event.key === "Escape") reset(); });
  });
}

function applyOpacity() {
  const value = Number($("#opacity").value);
  $("#opacity-value").textContent = `${Math.round(value * 100)}%`;
  document.querySelectorAll(".overlay").forEach((canvas) => { canvas.style.opacity = String(value); });
}

// ---------------------------------------------------------------------------------------- start
async function start() {
  wireDrop(0);
  wireDrop(1);
  $("#sample").addEventListener("click", () => useSample().catch((error) => showError(error.message)));
  $("#request").addEventListener("submit", submit);
  $("#cancel").addEventListener("click", cancel);
  $("#opacity").addEventListener("input", applyOpacity);
  $("#method-filter").addEventListener("input", filterMoreMethods);
  $("#smooth").addEventListener("change", () => state.answer && showAnswer(state.answer));
  try {
    const [models, methods] = await Promise.all([getJSON("/api/models"), getJSON("/api/methods")]);
    state.models = models;
    state.methods = methods;
    const select = $("#model");
    for (const model of models) {
      const option = document.createElement("option");
      option.value = model.name;
      option.textContent = model.name;
      option.title = model.description;
      select.append(option);
    }
    const note = () => {
      const model = models.find((m) => m.name === select.value);
      $("#model-note").textContent = model ? model.description : "";
    };
    select.addEventListener("change", note);
    select.addEventListener("change", applyModelKind);
    note();
    renderMethods(methods);
    applyModelKind();
    document.body.dataset.ready = "true";
  } catch (error) {
    showError(`Cannot reach the server: ${error.message}`);
  }
}

document.addEventListener("DOMContentLoaded", start);
