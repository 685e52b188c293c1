// The two DOM helpers every part of the page uses.

export const $ = (id) => document.getElementById(id);

// Shows ``text`` (a string, or {title, detail}) in a message element; a
// transient one is cleared by the next good poll.
export function showMessage(element, text, kind = "error", transient = false) {
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
