// Building the page without ever parsing markup: every text goes in through textContent
// (a text node), every attribute through setAttribute, so an agent's answer, a card field or a
// task id holding HTML shows as text and never runs. Nothing in the dashboard parses HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const item of child) append(parent, item);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (name === "style" || name.startsWith("on")) {
      throw new Error(`refusing to set ${name}: the CSP forbids inline styles and handlers`);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

/** An HTML element: h("a", {href: "/ui/"}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, for the run drawing. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace every child of `element` with `children`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A time as the reader's local clock says it. */
export function when(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value) : new Date(String(value));
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** A task state without its prefix: TASK_STATE_INPUT_REQUIRED -> input-required. */
export function stateName(state) {
  return String(state || "TASK_STATE_UNSPECIFIED").replace(/^TASK_STATE_/, "").toLowerCase().replace(/_/g, "-");
}

export const TERMINAL = new Set(["completed", "failed", "canceled", "rejected"]);

/** A state badge. */
export function badge(state) {
  const name = stateName(state);
  return h("span", { class: `badge state-${name}`, "data-state": name }, name);
}

/** A short form of a long id. */
export function short(id) {
  const text = String(id || "");
  return text.length > 12 ? `${text.slice(0, 8)}…` : text;
}
