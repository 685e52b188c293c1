// The browser page of the SyncHuman job service.
//
// It speaks only the public HTTP API: POST /v1/jobs to submit, GET
// /v1/jobs/{id}/events to follow a job (an EventSource: one event per change;
// GET /v1/jobs/{id} with a growing delay where no stream can be used), POST
// /v1/jobs/{id}/cancel to stop one, GET /info for the option bounds and the
// pipeline the workers run.  The 3D viewer is Google's <model-viewer>, served
// by this server from its own install (no CDN); without it the page still
// offers the downloads.

import { API, ERROR_WORDS, TERMINAL, apiFetch, apiKey, capitalise, describeError, onUnauthorized, saveApiKey } from "./api.js";
import { $, showMessage } from "./dom.js";
import { formatSeconds, formatTimings, toMillis } from "./format.js";
import { applyOptionBounds, collectOptions, resetOptions, updateSimplifyLabel } from "./options.js";
import { pipelineDescription, pipelineNames, setPipelineBadge } from "./pipeline.js";
import { configureRecent, refreshRecent, rememberJob, renderRecent, saveRecent, updateRecent } from "./recent.js";

const VIEWER_MODULE = "/ui/vendor/model-viewer.min.js";

const ACCEPTED_TYPES = ["image/png", "image/jpeg", "image/webp"];

const STAGE_LABELS = {
  preprocess: "preparing the photo",
  stage1: "stage 1 · generating five views",
  stage2: "stage 2 · building the textured mesh",
  export: "exporting the model",
  upload: "saving the results",
};

const state = {
  file: null,
  photoUrl: null,
  jobId: null,
  pollTimer: null,
  pollDelay: 500,
  events: null,
  job: null,
  shownGlb: null,
  viewerReady: null,
  fileJobId: null,
  cancelSupported: true,
};

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

// ---------------------------------------------------------------- server info

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

// ---------------------------------------------------------------- API key

// Shows the API-key field (the server answered 401); the key lives in this tab only.
function askForApiKey() {
  const row = $("api-key-row");
  if (!row.hidden) return;
  row.hidden = false;
  $("api-key").focus();
}

function setupApiKey() {
  const input = $("api-key");
  input.value = apiKey();
  if (input.value) $("api-key-row").hidden = false;
  input.addEventListener("input", () => saveApiKey(input.value.trim()));
  onUnauthorized(askForApiKey);
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
  input.addEventListener("change", () => {
    chooseFile(input.files[0]);
    input.value = ""; // choosing the same file again still counts
  });
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
    event.stopPropagation();
    const file = event.dataTransfer.files[0];
    if (file) chooseFile(file);
  });
  // The whole window accepts a drop, so a near miss does not open the file.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files[0]) chooseFile(event.dataTransfer.files[0]);
  });
  // A photo pasted from the clipboard counts as chosen.
  window.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])][0];
    if (file) chooseFile(file);
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
  stopFollowing();
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
  follow();
  $("job-panel").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

// Follows the open job through its event stream.  EventSource reconnects by
// itself (resuming with Last-Event-ID) after a dropped connection; it cannot
// send an API key, so with a key, without EventSource, or when the stream is
// refused (an unknown job, a server without it) the page polls instead.
function follow() {
  const id = state.jobId;
  if (!window.EventSource || apiKey()) {
    poll();
    return;
  }
  const source = new EventSource(API.events(id));
  state.events = source;
  const show = (message) => {
    if (id !== state.jobId) return;
    const job = JSON.parse(message.data);
    renderJob(job);
    if (TERMINAL.has(job.status)) stopFollowing();
  };
  source.addEventListener("update", show);
  source.addEventListener("done", show);
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.CLOSED || state.events !== source) return;
    state.events = null;
    poll();
  });
}

function stopFollowing() {
  if (state.events) state.events.close();
  state.events = null;
  stopPolling();
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
    state.pollDelay = job.status === "running" ? 500 : Math.min(state.pollDelay * 1.3, 1000);
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

function renderJob(job) {
  state.job = job;
  const status = job.status;
  const chip = $("job-status");
  chip.textContent = status;
  chip.dataset.status = status;
  const thumbnail = findOutput(outputMap(job), "stage2/thumbnail.png");
  updateRecent(job.id || state.jobId, thumbnail ? { status, thumbnail } : { status });

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
  const rigged = findOutput(outputs, "stage2/rigged.glb");
  const downloads = [
    ["Download GLB", glb, "output.glb", "primary"],
    ["Rigged GLB", rigged, "rigged.glb", "secondary"],
    ["USDZ (AR)", findOutput(outputs, "stage2/output.usdz"), "output.usdz", "secondary"],
    ["OBJ (zip)", findOutput(outputs, "stage2/output_obj.zip"), "output_obj.zip", "secondary"],
    ["PLY mesh", findOutput(outputs, "stage2/output_mesh.ply"), "output_mesh.ply", "secondary"],
    ["Turntable video", findOutput(outputs, "stage2/turntable.mp4"), "turntable.mp4", "secondary"],
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
  showModel(rigged || glb, Boolean(rigged));
}

// Shows ``url`` in the 3D viewer; a rigged model plays its clip.
async function showModel(url, animated = false) {
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
  viewer.autoplay = animated;
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
      showMessage(messageBox, { title: ERROR_WORDS.job_not_cancelable, detail: "" }, "warning");
    } else {
      showMessage(messageBox, describeError(error), "warning");
    }
  }
  if (current && !state.events) {  // a stream shows the change by itself
    stopPolling();
    state.pollDelay = 300;
    poll();
  }
}

// ---------------------------------------------------------------- start

function start() {
  state.viewerReady = loadViewer();
  setupApiKey();
  setupDropZone();
  $("job-form").addEventListener("submit", submitJob);
  $("opt-simplify").addEventListener("input", updateSimplifyLabel);
  $("reset-options").addEventListener("click", resetOptions);
  $("cancel-button").addEventListener("click", () => state.jobId && cancelJob(state.jobId));
  configureRecent({
    currentJobId: () => state.jobId,
    canCancel: () => state.cancelSupported,
    open: (id) => openJob(id),
    cancel: (id) => cancelJob(id),
  });
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
