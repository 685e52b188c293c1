// The browser page of the SyncHuman job service.
//
// It speaks only the public HTTP API: POST /v1/jobs to submit, GET /v1/jobs/{id}
// to follow a job (polling with a growing delay, never reloading), POST
// /v1/jobs/{id}/cancel to stop one, GET /info for the option bounds and the
// pipeline the workers run.  The 3D viewer is Google's <model-viewer>, served
// by this server from its own install (no CDN); without it the page still
// offers the downloads.

const API = {
  jobs: "/v1/jobs",
  job: (id) => `/v1/jobs/${encodeURIComponent(id)}`,
  cancel: (id) => `/v1/jobs/${encodeURIComponent(id)}/cancel`,
  info: "/info",
  ready: "/readyz",
};
const VIEWER_MODULE = "/ui/vendor/model-viewer.min.js";
const RECENT_KEY = "synchuman.recentJobs";
const RECENT_MAX = 20;
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const ACCEPTED_TYPES = ["image/png", "image/jpeg", "image/webp"];

// Option defaults and bounds of the official model; /info replaces them when it answers.
const FALLBACK_OPTIONS = {
  seed: { default: 43, minimum: 0, maximum: 2 ** 31 - 1 },
  stage1_steps: { default: 50, minimum: 1, maximum: 200 },
  guidance_scale: { default: 3.0, minimum: 0, maximum: 20 },
  stage2_steps: { default: 25, minimum: 1, maximum: 100 },
  cfg_strength: { default: 5.0, minimum: 0, maximum: 20 },
  texture_size: { default: 1024, minimum: 256, maximum: 2048, allowed: [512, 1024, 2048] },
  simplify: { default: 0.7, minimum: 0, maximum: 0.98 },
};

// Error codes of the service, said in words.  The server's own message follows.
const ERROR_WORDS = {
  invalid_image: "That file is not an image the service can read.",
  unsupported_format: "That image format is not supported: use PNG, JPEG or WebP.",
  no_foreground: "No person was found in the photo. Use a photo of one person, or a PNG with a transparent background.",
  segmenter_unavailable: "This server cannot cut a person out of an opaque photo: upload a PNG with a transparent background.",
  empty_upload: "The file is empty.",
  missing_image: "Choose a photo first.",
  image_too_large: "The image has too many pixels.",
  payload_too_large: "The file is too large.",
  invalid_options: "One of the advanced options is out of range.",
  invalid_input: "The request could not be used.",
  invalid_request: "The request could not be used.",
  queue_full: "The queue is full right now. Please try again in a minute.",
  service_unavailable: "The service is busy or not ready. Please try again in a minute.",
  rate_limited: "Too many requests. Please wait a moment and try again.",
  job_not_found: "This job no longer exists (results are kept for a limited time).",
  pipeline_error: "The model failed on this photo.",
  worker_lost: "The worker running this job stopped repeatedly, so the job was given up.",
  storage_error: "The results could not be stored.",
  canceled: "The job was canceled.",
  internal_error: "Something went wrong on the server.",
};

const STAGE_LABELS = {
  preprocess: "preparing the photo",
  stage1: "stage 1 · generating five views",
  stage2: "stage 2 · building the textured mesh",
  export: "exporting the model",
  upload: "saving the results",
};

const $ = (id) => document.getElementById(id);

const state = {
  file: null,
  photoUrl: null,
  options: structuredClone(FALLBACK_OPTIONS),
  jobId: null,
  pollTimer: null,
  pollDelay: 500,
  job: null,
  shownGlb: null,
  viewerReady: null,
  fileJobId: null,
  cancelSupported: true,
};

// ---------------------------------------------------------------- HTTP helpers

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The {code, message} of an error body, whatever envelope the server used.
function errorFromBody(status, body) {
  let err = body;
  if (err && typeof err === "object" && err.error) err = err.error;
  else if (err && typeof err === "object" && err.detail) err = err.detail;
  if (Array.isArray(err)) {
    const first = err[0] || {};
    return new ApiError(status, "invalid_input", first.msg || "The request was refused.");
  }
  if (typeof err === "string") return new ApiError(status, defaultCode(status), err);
  const code = (err && err.code) || defaultCode(status);
  const message = (err && err.message) || `The server answered ${status}.`;
  return new ApiError(status, code, message);
}

function defaultCode(status) {
  if (status === 404) return "job_not_found";
  if (status === 413) return "payload_too_large";
  if (status === 415) return "unsupported_format";
  if (status === 429) return "rate_limited";
  if (status === 503) return "service_unavailable";
  if (status >= 500) return "internal_error";
  return "invalid_input";
}

async function apiFetch(url, init = {}) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, ...init });
  } catch (networkError) {
    throw new ApiError(0, "network", "The server could not be reached.");
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (!response.ok) {
    const error = errorFromBody(response.status, body);
    error.body = body;
    throw error;
  }
  return body;
}

// {title, detail} of an error: the code said in words, and the server's own message.
function describeError(error) {
  if (error.code === "network") return { title: error.message, detail: "" };
  const words = ERROR_WORDS[error.code];
  const detail = error.message && error.message !== words ? capitalise(error.message) : "";
  if (words) return { title: words, detail };
  return { title: detail || "Something went wrong.", detail: "" };
}

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// Shows ``text`` (a string, or {title, detail}) in a message element; a
// transient one is cleared by the next good poll.
function showMessage(element, text, kind = "error", transient = false) {
  if (text && typeof text === "object") {
    const title = document.createElement("strong");
    title.textContent = text.title;
    element.replaceChildren(title);
    if (text.detail) {
      const detail = document.createElement("span");
      detail.className = "detail";
      detail.textContent = text.detail;
      element.append(detail);
    }
  } else {
    element.textContent = text;
  }
  element.className = `message ${kind}`;
  element.hidden = !text;
  if (transient) element.dataset.transient = "1";
  else delete element.dataset.transient;
}

// ---------------------------------------------------------------- outputs

// The artifacts of a job as a Map name -> url, whatever shape the API returns
// ({name: url}, {name: {url}}, or [{name, url}]).
function outputMap(job) {
  const result = new Map();
  const outputs = job && (job.outputs || job.artifacts);
  if (!outputs) return result;
  const entries = Array.isArray(outputs)
    ? outputs.map((o) => [o.name || o.key || o.path, o])
    : Object.entries(outputs);
  for (const [name, value] of entries) {
    const url = typeof value === "string" ? value : value && (value.url || value.href);
    if (name && url) result.set(name.replace(/^jobs\/[^/]+\//, ""), url);
  }
  return result;
}

function findOutput(outputs, suffix) {
  for (const [name, url] of outputs) {
    if (name === suffix || name.endsWith(`/${suffix}`) || name.endsWith(suffix)) return url;
  }
  return null;
}

// ---------------------------------------------------------------- options

function applyOptionBounds(info) {
  const bounds = findOptionBounds(info);
  if (bounds) {
    for (const [name, b] of Object.entries(bounds)) {
      if (state.options[name]) state.options[name] = { ...state.options[name], ...b };
    }
  }
  for (const [name, b] of Object.entries(state.options)) {
    const input = $(`opt-${name}`);
    if (!input) continue;
    if (name === "texture_size") {
      input.replaceChildren(
        ...(b.allowed || [512, 1024, 2048]).map((size) => new Option(`${size} px`, String(size))),
      );
    } else {
      if (b.minimum != null) input.min = b.minimum;
      if (b.maximum != null) input.max = b.maximum;
    }
    if (b.description) input.title = b.description;
  }
  resetOptions();
}

// /info nests the bounds somewhere: find the object whose "seed" has a default.
function findOptionBounds(node, depth = 0) {
  if (!node || typeof node !== "object" || depth > 4) return null;
  if (node.seed && typeof node.seed === "object" && "default" in node.seed) return node;
  for (const value of Object.values(node)) {
    const found = findOptionBounds(value, depth + 1);
    if (found) return found;
  }
  return null;
}

function resetOptions() {
  for (const [name, b] of Object.entries(state.options)) {
    const input = $(`opt-${name}`);
    if (input && b.default != null) input.value = String(b.default);
  }
  if (state.options.simplify) {
    const s = $("opt-simplify");
    s.min = state.options.simplify.minimum ?? 0;
    s.max = state.options.simplify.maximum ?? 0.98;
  }
  updateSimplifyLabel();
}

function updateSimplifyLabel() {
  const value = Number($("opt-simplify").value);
  $("simplify-value").textContent = `${Math.round(value * 100)}% of faces removed`;
}

// The options that differ from the defaults, checked against the bounds; null if none.
function collectOptions() {
  const chosen = {};
  for (const [name, b] of Object.entries(state.options)) {
    const input = $(`opt-${name}`);
    if (!input || input.value === "") continue;
    const value = Number(input.value);
    const label = input.closest("label").firstChild.textContent.trim();
    if (!Number.isFinite(value)) throw new Error(`${label}: not a number.`);
    if (b.minimum != null && value < b.minimum) throw new Error(`${label}: at least ${b.minimum}.`);
    if (b.maximum != null && value > b.maximum) throw new Error(`${label}: at most ${b.maximum}.`);
    if (value !== Number(b.default)) chosen[name] = value;
  }
  return Object.keys(chosen).length ? chosen : null;
}

// ---------------------------------------------------------------- pipeline label

function pipelineNames(info) {
  const names = new Set();
  const visit = (node, depth) => {
    if (!node || depth > 4) return;
    if (typeof node === "string") {
      if (/^(preview|synchuman)$/i.test(node)) names.add(node.toLowerCase());
      return;
    }
    if (Array.isArray(node)) return node.forEach((v) => visit(v, depth + 1));
    if (typeof node === "object") {
      for (const [key, value] of Object.entries(node)) {
        if (/pipeline|name|workers?/i.test(key) || depth === 0) visit(value, depth + 1);
      }
    }
  };
  visit(info && (info.pipelines ?? info.pipeline ?? info.workers), 0);
  return [...names];
}

function setPipelineBadge(name, detail = "") {
  const badge = $("pipeline-badge");
  if (name === "preview") {
    badge.dataset.kind = "preview";
    badge.textContent = "Preview pipeline · a fast CPU approximation, not SyncHuman";
  } else if (name === "synchuman") {
    badge.dataset.kind = "synchuman";
    badge.textContent = "SyncHuman model";
  } else {
    badge.dataset.kind = "unknown";
    badge.textContent = name ? `Pipeline: ${name}` : "Pipeline: no worker is ready yet";
  }
  if (detail) badge.title = detail;
}

function pipelineDescription(pipeline) {
  if (!pipeline) return "";
  const name = pipeline.name || "";
  const label = name === "preview" ? "the preview pipeline (a CPU approximation, not SyncHuman)"
    : name === "synchuman" ? "the SyncHuman model" : name;
  const extras = [pipeline.version && `version ${pipeline.version}`, pipeline.device && `on ${pipeline.device}`]
    .filter(Boolean).join(", ");
  return `Made by ${label}${extras ? ` (${extras})` : ""}.`;
}

// Option bounds from /info; the pipeline name from /info, else from the
// workers listed by /readyz (which answers 503 with the same body when no
// worker is warm yet).
async function loadInfo() {
  let names = [];
  try {
    const info = await apiFetch(API.info);
    applyOptionBounds(info);
    names = pipelineNames(info);
  } catch {
    applyOptionBounds(null);
  }
  if (!names.length) {
    try {
      names = pipelineNames(await apiFetch(API.ready));
    } catch (error) {
      names = pipelineNames(error.body);
    }
  }
  setPipelineBadge(names.join(" + "));
}

// ---------------------------------------------------------------- photo input

function chooseFile(file) {
  showMessage($("form-error"), "");
  if (!file) return;
  state.file = file;
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(file);
  const img = $("photo-preview");
  img.hidden = false;
  img.onerror = () => {
    img.hidden = true;
    $("photo-caption").textContent = `${file.name} (no preview: the browser cannot show this file)`;
  };
  img.src = state.photoUrl;
  $("photo-caption").textContent = file.name;
  $("cutout-figure").hidden = true;
  $("photo-figure").hidden = false;
  $("previews").hidden = false;
  $("submit-button").disabled = false;
  state.fileJobId = null;
  if (file.type && !ACCEPTED_TYPES.includes(file.type)) {
    showMessage($("form-error"), `${file.name} does not look like a PNG, JPEG or WebP photo; the server will check it.`, "warning");
  }
}

function setupDropZone() {
  const zone = $("drop-zone");
  const input = $("file-input");
  input.addEventListener("change", () => chooseFile(input.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) chooseFile(file);
  });
  // The whole window accepts a drop, so a near miss does not open the file.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files[0]) chooseFile(event.dataTransfer.files[0]);
  });
}

async function submitJob(event) {
  event.preventDefault();
  const formError = $("form-error");
  showMessage(formError, "");
  if (!state.file) {
    showMessage(formError, "Choose a photo first.");
    return;
  }
  let options;
  try {
    options = collectOptions();
  } catch (invalid) {
    $("advanced").open = true;
    showMessage(formError, invalid.message);
    return;
  }
  const body = new FormData();
  body.append("image", state.file, state.file.name);
  if (options) body.append("options", JSON.stringify(options));
  const button = $("submit-button");
  button.disabled = true;
  button.textContent = "Uploading…";
  try {
    const created = await apiFetch(API.jobs, { method: "POST", body });
    rememberJob({ id: created.id, name: state.file.name, submittedAt: Date.now(), status: created.status || "queued" });
    state.fileJobId = created.id;
    openJob(created.id, created);
  } catch (error) {
    showMessage(formError, describeError(error));
  } finally {
    button.disabled = false;
    button.textContent = "Generate 3D model";
  }
}

// ---------------------------------------------------------------- following a job

function openJob(id, initial = null) {
  stopPolling();
  state.jobId = id;
  state.job = null;
  state.shownGlb = null;
  state.pollDelay = 500;
  $("placeholder-panel").hidden = true;
  $("job-panel").hidden = false;
  $("stage1-panel").hidden = true;
  $("result-panel").hidden = true;
  $("job-id").textContent = id;
  showMessage($("job-message"), "");
  $("color-strip").replaceChildren();
  $("normal-strip").replaceChildren();
  // A reopened job shows its own cut-out, not the photo chosen for another one.
  const ownPhoto = id === state.fileJobId;
  $("photo-figure").hidden = !ownPhoto;
  $("previews").hidden = !ownPhoto;
  $("cutout-figure").hidden = true;
  delete $("cutout-preview").dataset.src;
  renderRecent();
  history.replaceState(null, "", `#job=${encodeURIComponent(id)}`);
  if (initial && initial.status) renderJob({ ...initial, id });
  poll();
  $("job-panel").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function stopPolling() {
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
}

async function poll() {
  const id = state.jobId;
  try {
    const job = await apiFetch(API.job(id));
    if (id !== state.jobId) return;
    state.pollDelay = job.status === "running" ? 500 : Math.min(state.pollDelay * 1.3, 2000);
    renderJob(job);
    if (TERMINAL.has(job.status)) return;
  } catch (error) {
    if (id !== state.jobId) return;
    if (error.status === 404) {
      updateRecent(id, { status: "expired" });
      renderJobGone();
      return;
    }
    const { title } = describeError(error);
    showMessage($("job-message"), { title: `${title} Retrying…`, detail: "" }, "warning", true);
    state.pollDelay = Math.min(state.pollDelay * 2, 5000);
  }
  state.pollTimer = setTimeout(poll, state.pollDelay);
}

function renderJobGone() {
  $("job-status").textContent = "expired";
  $("job-status").dataset.status = "failed";
  $("cancel-button").hidden = true;
  $("progress-text").textContent = "";
  showMessage($("job-message"), ERROR_WORDS.job_not_found);
}

function toMillis(value) {
  if (value == null) return null;
  if (typeof value === "number") return value > 1e12 ? value : value * 1000;
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? null : parsed;
}

function formatSeconds(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "";
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${String(seconds % 60).padStart(2, "0")} s`;
}

// " (stage 1 4 s, stage 2 6 s)" from the per-stage timings, or "".
function formatTimings(timings) {
  if (!timings) return "";
  const names = { stage1: "stage 1", stage2: "stage 2" };
  const parts = Object.entries(names)
    .filter(([key]) => typeof timings[key] === "number")
    .map(([key, label]) => `${label} ${timings[key] < 10 ? `${timings[key].toFixed(1)} s` : formatSeconds(timings[key])}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

function renderJob(job) {
  state.job = job;
  const status = job.status;
  const chip = $("job-status");
  chip.textContent = status;
  chip.dataset.status = status;
  updateRecent(job.id || state.jobId, { status });

  const progress = status === "succeeded" ? 100 : Number(job.progress || 0);
  $("progress-bar").value = progress;
  renderStages(job);

  const parts = [];
  if (status === "queued") {
    parts.push(job.queue_position != null ? `Waiting in the queue: position ${job.queue_position}` : "Waiting in the queue");
  } else if (status === "running") {
    parts.push(`${Math.round(progress)}% · ${STAGE_LABELS[job.stage] || "starting"}`);
  } else if (status === "succeeded") {
    parts.push(`Done${formatTimings(job.timings)}`);
  }
  const created = toMillis(job.created_at);
  const finished = toMillis(job.finished_at);
  if (created) parts.push(`elapsed ${formatSeconds(((finished || Date.now()) - created) / 1000)}`);
  if (!TERMINAL.has(status) && job.eta_s != null) parts.push(`about ${formatSeconds(job.eta_s)} left`);
  $("progress-text").textContent = parts.join(" · ");

  $("cancel-button").hidden = TERMINAL.has(status) || !state.cancelSupported;

  if (status === "failed") {
    const err = job.error || {};
    const words = ERROR_WORDS[err.code] || "The job failed.";
    const detail = [
      err.message && err.message !== words ? capitalise(err.message) : "",
      err.code ? `(code ${err.code})` : "",
      err.retryable ? "You can try again." : "",
    ].filter(Boolean).join(" ");
    showMessage($("job-message"), { title: `Job failed: ${words}`, detail });
  } else if (status === "canceled") {
    showMessage($("job-message"), "The job was canceled.", "info");
  } else if ($("job-message").dataset.transient) {
    showMessage($("job-message"), "");
  }

  const outputs = outputMap(job);
  renderStage1(outputs);
  renderResult(job, outputs);
}

function renderStages(job) {
  const order = ["queue", "stage1", "stage2", "export"];
  const stageOf = { preprocess: "stage1", stage1: "stage1", stage2: "stage2", export: "export", upload: "export" };
  let current = job.status === "queued" ? "queue" : stageOf[job.stage] || "stage1";
  const index = job.status === "succeeded" ? order.length : order.indexOf(current);
  for (const li of $("stages").children) {
    const i = order.indexOf(li.dataset.stage);
    li.classList.toggle("done", i < index);
    li.classList.toggle("active", i === index && !TERMINAL.has(job.status));
    li.classList.toggle("stopped", i === index && (job.status === "failed" || job.status === "canceled"));
    if (i === index && !TERMINAL.has(job.status)) li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
  }
}

function renderStage1(outputs) {
  const strip = (prefix, container, label) => {
    if (container.children.length) return true;
    const urls = [0, 1, 2, 3, 4].map((i) => findOutput(outputs, `stage1/${prefix}_${i}.png`));
    if (urls.some((u) => !u)) return false;
    const views = ["front", "right", "back", "left", "face"];
    container.replaceChildren(...urls.map((url, i) => {
      const figure = document.createElement("figure");
      figure.setAttribute("role", "listitem");
      const img = document.createElement("img");
      img.src = url;
      img.alt = `${label}, ${views[i]} view`;
      img.loading = "eager";
      img.className = `view ${prefix}`;
      const caption = document.createElement("figcaption");
      caption.textContent = views[i];
      figure.append(img, caption);
      return figure;
    }));
    return true;
  };
  const colors = strip("color", $("color-strip"), "Colour");
  const normals = strip("normal", $("normal-strip"), "Normal map");
  if (colors || normals) $("stage1-panel").hidden = false;

  const cutout = findOutput(outputs, "stage1/input.png");
  if (cutout && $("cutout-preview").dataset.src !== cutout) {
    $("cutout-preview").dataset.src = cutout;
    $("cutout-preview").src = cutout;
    $("cutout-figure").hidden = false;
    $("previews").hidden = false;
  }
}

function renderResult(job, outputs) {
  const glb = findOutput(outputs, "stage2/output.glb") || findOutput(outputs, ".glb");
  if (job.status !== "succeeded" || !glb) return;
  $("result-panel").hidden = false;
  const downloads = [
    ["Download GLB", glb, "output.glb", "primary"],
    ["PLY mesh", findOutput(outputs, "stage2/output_mesh.ply"), "output_mesh.ply", "secondary"],
    ["All results (zip)", findOutput(outputs, "results.zip"), "results.zip", "secondary"],
  ];
  $("downloads").replaceChildren(...downloads.filter(([, url]) => url).map(([label, url, file, kind]) => {
    const a = document.createElement("a");
    a.className = `button ${kind} download`;
    a.href = url;
    a.download = `${job.id || state.jobId}-${file}`;
    a.textContent = label;
    return a;
  }));
  $("result-pipeline").textContent = pipelineDescription(job.pipeline);
  if (job.pipeline && job.pipeline.name) setPipelineBadge(job.pipeline.name);
  showModel(glb);
}

async function showModel(url) {
  // Presigned URLs change on every GET: reload only for a new job.
  if (state.shownGlb === state.jobId) return;
  state.shownGlb = state.jobId;
  const viewer = $("viewer");
  const ready = await state.viewerReady;
  if (!ready) {
    viewer.hidden = true;
    $("viewer-hint").hidden = true;
    $("viewer-missing").hidden = false;
    return;
  }
  $("viewer-loading").hidden = false;
  viewer.addEventListener("load", () => { $("viewer-loading").hidden = true; }, { once: true });
  viewer.addEventListener("error", () => {
    $("viewer-loading").hidden = true;
    showMessage($("job-message"), "The 3D viewer could not display the model; the downloads still work.", "warning");
  }, { once: true });
  viewer.src = url;
}

async function loadViewer() {
  try {
    await import(VIEWER_MODULE);
    await customElements.whenDefined("model-viewer");
    return true;
  } catch {
    return false;
  }
}

// Asks the service to cancel job ``id``: a queued job ends at once, a running
// one at its next step.  Servers without the cancel route hide the buttons.
async function cancelJob(id) {
  const current = id === state.jobId;
  const messageBox = current ? $("job-message") : $("recent-message");
  try {
    const job = await apiFetch(API.cancel(id), { method: "POST" });
    if (job && job.status) updateRecent(id, { status: job.status });
    if (!current) setTimeout(refreshRecent, 1500);
  } catch (error) {
    const unsupported = error.status === 405 || (error.status === 404 && error.code !== "job_not_found");
    if (unsupported) {
      state.cancelSupported = false;
      $("cancel-button").hidden = true;
      renderRecent();
      showMessage(messageBox, "Cancel is not available on this server.", "warning");
    } else if (error.status === 409) {
      showMessage(messageBox, { title: "The job can no longer be canceled: it has already finished.", detail: "" }, "warning");
    } else {
      showMessage(messageBox, describeError(error), "warning");
    }
  }
  if (current) {
    stopPolling();
    state.pollDelay = 300;
    poll();
  }
}

// ---------------------------------------------------------------- recent jobs

function loadRecent() {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
    return Array.isArray(list) ? list.filter((j) => j && typeof j.id === "string") : [];
  } catch {
    return [];
  }
}

function saveRecent(list) {
  try {
    localStorage.setItem(RECENT_KEY, JSON.stringify(list.slice(0, RECENT_MAX)));
  } catch {
    // Private windows may refuse storage; the list is a convenience.
  }
}

function rememberJob(entry) {
  saveRecent([entry, ...loadRecent().filter((j) => j.id !== entry.id)]);
  renderRecent();
}

function updateRecent(id, changes) {
  const list = loadRecent();
  const entry = list.find((j) => j.id === id);
  if (!entry || Object.entries(changes).every(([k, v]) => entry[k] === v)) return;
  Object.assign(entry, changes);
  saveRecent(list);
  renderRecent();
}

function renderRecent() {
  const list = loadRecent();
  $("recent-empty").hidden = list.length > 0;
  $("clear-recent").hidden = list.length === 0;
  $("recent-list").replaceChildren(...list.map((job) => {
    const li = document.createElement("li");
    li.dataset.jobId = job.id;
    if (job.id === state.jobId) li.classList.add("current");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "recent-open";
    const when = job.submittedAt ? new Date(job.submittedAt).toLocaleString() : "";
    open.innerHTML = `<span class="recent-name"></span><span class="recent-when muted"></span>`;
    open.querySelector(".recent-name").textContent = job.name || job.id;
    open.querySelector(".recent-when").textContent = when;
    open.setAttribute("aria-label", `Open job ${job.name || job.id}, ${job.status || "unknown"}`);
    open.addEventListener("click", () => openJob(job.id));
    const chip = document.createElement("span");
    chip.className = "status-chip";
    chip.dataset.status = job.status === "expired" ? "failed" : job.status || "queued";
    chip.textContent = job.status || "unknown";
    li.append(open, chip);
    if (!TERMINAL.has(job.status) && job.status !== "expired" && state.cancelSupported) {
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "secondary small";
      cancel.textContent = "Cancel";
      cancel.setAttribute("aria-label", `Cancel job ${job.name || job.id}`);
      cancel.addEventListener("click", () => cancelJob(job.id));
      li.append(cancel);
    }
    return li;
  }));
}

// Refresh the statuses of unfinished jobs left from an earlier visit.
async function refreshRecent() {
  for (const job of loadRecent().filter((j) => !TERMINAL.has(j.status) && j.status !== "expired").slice(0, 10)) {
    try {
      const current = await apiFetch(API.job(job.id));
      updateRecent(job.id, { status: current.status });
    } catch (error) {
      if (error.status === 404) updateRecent(job.id, { status: "expired" });
    }
  }
}

// ---------------------------------------------------------------- start

function start() {
  state.viewerReady = loadViewer();
  setupDropZone();
  $("job-form").addEventListener("submit", submitJob);
  $("opt-simplify").addEventListener("input", updateSimplifyLabel);
  $("reset-options").addEventListener("click", resetOptions);
  $("cancel-button").addEventListener("click", () => state.jobId && cancelJob(state.jobId));
  $("clear-recent").addEventListener("click", () => {
    saveRecent([]);
    renderRecent();
  });
  applyOptionBounds(null);
  renderRecent();
  loadInfo();
  refreshRecent();
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("job");
  if (fromHash) openJob(fromHash);
}

start();
