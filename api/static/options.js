// The advanced options: bounds and defaults (from /info, else the official
// model's), the form fields, and the values that differ from the defaults.

import { $ } from "./dom.js";

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

const options = structuredClone(FALLBACK_OPTIONS);

export function applyOptionBounds(info) {
  const bounds = findOptionBounds(info);
  if (bounds) {
    for (const [name, b] of Object.entries(bounds)) {
      if (options[name]) options[name] = { ...options[name], ...b };
    }
  }
  for (const [name, b] of Object.entries(options)) {
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

export function resetOptions() {
  for (const [name, b] of Object.entries(options)) {
    const input = $(`opt-${name}`);
    if (input && b.default != null) input.value = String(b.default);
  }
  $("opt-rig").checked = false;
  for (const box of formatBoxes()) box.checked = false;
  if (options.simplify) {
    const s = $("opt-simplify");
    s.min = options.simplify.minimum ?? 0;
    s.max = options.simplify.maximum ?? 0.98;
  }
  updateSimplifyLabel();
}

export function updateSimplifyLabel() {
  const value = Number($("opt-simplify").value);
  $("simplify-value").textContent = `${Math.round(value * 100)}% of faces removed`;
}

// The options that differ from the defaults, checked against the bounds; null if none.
export function collectOptions() {
  const chosen = {};
  for (const [name, b] of Object.entries(options)) {
    const input = $(`opt-${name}`);
    if (!input || input.value === "") continue;
    const value = Number(input.value);
    const label = input.closest("label").firstChild.textContent.trim();
    if (!Number.isFinite(value)) throw new Error(`${label}: not a number.`);
    if (b.minimum != null && value < b.minimum) throw new Error(`${label}: at least ${b.minimum}.`);
    if (b.maximum != null && value > b.maximum) throw new Error(`${label}: at most ${b.maximum}.`);
    if (value !== Number(b.default)) chosen[name] = value;
  }
  if ($("opt-rig").checked) chosen.rig = true;
  const formats = formatBoxes().filter((box) => box.checked).map((box) => box.value);
  if (formats.length) chosen.formats = formats;
  return Object.keys(chosen).length ? chosen : null;
}

// The model formats besides the GLB (USDZ, OBJ) the job may ask for.
function formatBoxes() {
  return [...document.querySelectorAll("#opt-formats input[type=checkbox]")];
}
