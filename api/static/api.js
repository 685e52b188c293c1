// The service's HTTP API as the page uses it: paths, errors in words, fetch
// with the API key (when the server needs one) and the error body decoded.

import { formatSeconds } from "./format.js";

export const API = {
  jobs: "/v1/jobs",
  job: (id) => `/v1/jobs/${encodeURIComponent(id)}`,
  cancel: (id) => `/v1/jobs/${encodeURIComponent(id)}/cancel`,
  events: (id) => `/v1/jobs/${encodeURIComponent(id)}/events`,
  artifact: (id, name) => `/v1/jobs/${encodeURIComponent(id)}/artifacts/${name}`,
  info: "/info",
  ready: "/readyz",
};

const API_KEY_KEY = "synchuman.apiKey";

export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

// Error codes of the service, said in words.  The server's own message follows.
export const ERROR_WORDS = {
  invalid_image: "That file is not an image the service can read.",
  unsupported_format: "That image format is not supported: use PNG, JPEG or WebP.",
  no_foreground: "No person was found in the photo. Use a photo of one person, or a PNG with a transparent background.",
  no_person: "No person was found in the photo. The service models people: use a photo of one person, whole body in view.",
  segmenter_unavailable: "This server cannot cut a person out of an opaque photo: upload a PNG with a transparent background.",
  empty_upload: "The file is empty.",
  missing_image: "Choose a photo first.",
  image_too_large: "The image has too many pixels.",
  payload_too_large: "The file is too large.",
  invalid_options: "One of the advanced options is out of range.",
  invalid_input: "The request could not be used.",
  invalid_request: "The request could not be used.",
  queue_full: "The queue is full right now. Please try again later.",
  too_many_jobs_in_flight: "You already have as many unfinished jobs as this server allows; wait for one to finish.",
  unauthorized: "This server needs an API key: enter yours below.",
  url_refused: "The service will not fetch that address.",
  url_fetch_failed: "The image could not be downloaded.",
  job_not_cancelable: "The job can no longer be canceled: it has already finished.",
  illegal_transition: "The job can no longer be changed.",
  storage_unavailable: "The results store cannot be reached right now.",
  gpu_out_of_memory: "The GPU ran out of memory on this job.",
  timeout: "The job took longer than this server allows.",
  service_unavailable: "The service is busy or not ready. Please try again in a minute.",
  rate_limited: "Too many requests. Please wait a moment and try again.",
  job_not_found: "This job no longer exists (results are kept for a limited time).",
  pipeline_error: "The model failed on this photo.",
  worker_lost: "The worker running this job stopped repeatedly, so the job was given up.",
  storage_error: "The results could not be stored.",
  canceled: "The job was canceled.",
  internal_error: "Something went wrong on the server.",
};

export class ApiError extends Error {
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

export function apiKey() {
  try {
    return sessionStorage.getItem(API_KEY_KEY) || "";
  } catch {
    return "";
  }
}

// Remembers the API key for this tab (an empty key forgets it).
export function saveApiKey(key) {
  try {
    if (key) sessionStorage.setItem(API_KEY_KEY, key);
    else sessionStorage.removeItem(API_KEY_KEY);
  } catch {
    // Storage refused: the key is simply not remembered.
  }
}

let unauthorizedHandler = () => {};

// Called whenever the server answers 401 (it needs an API key).
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export async function apiFetch(url, init = {}) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(url, { headers, ...init });
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
    error.retryAfter = Number(response.headers.get("Retry-After")) || null;
    if (error.code === "unauthorized") unauthorizedHandler();
    throw error;
  }
  return body;
}

// {title, detail} of an error: the code said in words, and the server's own message.
export function describeError(error) {
  if (error.code === "network") return { title: error.message, detail: "" };
  const words = ERROR_WORDS[error.code];
  let detail = error.message && error.message !== words ? capitalise(error.message) : "";
  if (error.retryAfter) detail = `${detail}${detail ? " · " : ""}Try again in ${formatSeconds(error.retryAfter)}.`;
  if (words) return { title: words, detail };
  return { title: detail || "Something went wrong.", detail: "" };
}

export function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
