// Which method makes the models, said honestly: the preview pipeline is a
// CPU approximation, only "synchuman" is the published model.

import { $ } from "./dom.js";

export function pipelineNames(info) {
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

export function setPipelineBadge(name, detail = "") {
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

export function pipelineDescription(pipeline) {
  if (!pipeline) return "";
  const name = pipeline.name || "";
  const label = name === "preview" ? "the preview pipeline (a CPU approximation, not SyncHuman)"
    : name === "synchuman" ? "the SyncHuman model" : name;
  const extras = [pipeline.version && `version ${pipeline.version}`, pipeline.device && `on ${pipeline.device}`]
    .filter(Boolean).join(", ");
  return `Made by ${label}${extras ? ` (${extras})` : ""}.`;
}
