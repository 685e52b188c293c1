// This browser's recent jobs, kept in local storage: remembered on submit,
// updated as their statuses change, each reopenable and (while unfinished)
// cancelable.

import { API, TERMINAL, apiFetch, apiKey } from "./api.js";
import { $ } from "./dom.js";

const RECENT_KEY = "synchuman.recentJobs";

const RECENT_MAX = 20;

const hooks = {
  currentJobId: () => null,
  canCancel: () => true,
  open: () => {},
  cancel: () => {},
};

// What the list needs from the page: the open job, whether cancel exists, and the actions.
export function configureRecent(actions) {
  Object.assign(hooks, actions);
}

function loadRecent() {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
    return Array.isArray(list) ? list.filter((j) => j && typeof j.id === "string") : [];
  } catch {
    return [];
  }
}

export function saveRecent(list) {
  try {
    localStorage.setItem(RECENT_KEY, JSON.stringify(list.slice(0, RECENT_MAX)));
  } catch {
    // Private windows may refuse storage; the list is a convenience.
  }
}

export function rememberJob(entry) {
  saveRecent([entry, ...loadRecent().filter((j) => j.id !== entry.id)]);
  renderRecent();
}

export function updateRecent(id, changes) {
  const list = loadRecent();
  const entry = list.find((j) => j.id === id);
  if (!entry || Object.entries(changes).every(([k, v]) => entry[k] === v)) return;
  Object.assign(entry, changes);
  saveRecent(list);
  renderRecent();
}

export function renderRecent() {
  const list = loadRecent();
  $("recent-empty").hidden = list.length > 0;
  $("clear-recent").hidden = list.length === 0;
  $("recent-list").replaceChildren(...list.map((job) => {
    const li = document.createElement("li");
    li.dataset.jobId = job.id;
    if (job.id === hooks.currentJobId()) li.classList.add("current");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "recent-open";
    const when = job.submittedAt ? new Date(job.submittedAt).toLocaleString() : "";
    open.innerHTML = `<span class="recent-name"></span><span class="recent-when muted"></span>`;
    open.querySelector(".recent-name").textContent = job.name || job.id;
    open.querySelector(".recent-when").textContent = when;
    open.setAttribute("aria-label", `Open job ${job.name || job.id}, ${job.status || "unknown"}`);
    open.addEventListener("click", () => hooks.open(job.id));
    if (job.thumbnail && job.status === "succeeded") li.append(thumbnailOf(job));
    const chip = document.createElement("span");
    chip.className = "status-chip";
    chip.dataset.status = job.status === "expired" ? "failed" : job.status || "queued";
    chip.textContent = job.status || "unknown";
    li.append(open, chip);
    if (!TERMINAL.has(job.status) && job.status !== "expired" && hooks.canCancel()) {
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "secondary small";
      cancel.textContent = "Cancel";
      cancel.setAttribute("aria-label", `Cancel job ${job.name || job.id}`);
      cancel.addEventListener("click", () => hooks.cancel(job.id));
      li.append(cancel);
    }
    return li;
  }));
}

// The finished model's picture.  Without an API key the artifact route answers a
// fresh URL every time; with one (an <img> cannot send it) the URL kept from the
// job's last read serves until it expires.
function thumbnailOf(job) {
  const img = document.createElement("img");
  img.className = "recent-thumbnail";
  img.alt = "";
  img.loading = "lazy";
  img.src = apiKey() ? job.thumbnail : API.artifact(job.id, "stage2/thumbnail.png");
  img.addEventListener("error", () => img.remove(), { once: true });
  return img;
}

// Refresh the statuses of unfinished jobs left from an earlier visit.
export async function refreshRecent() {
  for (const job of loadRecent().filter((j) => !TERMINAL.has(j.status) && j.status !== "expired").slice(0, 10)) {
    try {
      const current = await apiFetch(API.job(job.id));
      updateRecent(job.id, { status: current.status });
    } catch (error) {
      if (error.status === 404) updateRecent(job.id, { status: "expired" });
    }
  }
}
