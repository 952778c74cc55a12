// The run's shape as an SVG: the request, then each column of steps (steps that ran together
// share a column), then the result; every step of one column joins every step of the next. A
// step is a link to its child task; a step on another gateway (a remote agent) is drawn dashed
// and names its peer.

import { s } from "./dom.js";
import { taskPath } from "./links.js";

const NODE_W = 170;
const NODE_H = 46;
const GAP_X = 60;
const GAP_Y = 18;
const PAD = 12;

function box(x, y, title, subtitle, classes, attrs = {}) {
  return s(
    "g",
    { class: classes, transform: `translate(${x},${y})`, ...attrs },
    s("rect", { width: NODE_W, height: NODE_H, rx: 8, ry: 8 }),
    s("text", { x: 10, y: 19, class: "title" }, clip(title, 22)),
    s("text", { x: 10, y: 36, class: "subtitle" }, clip(subtitle, 26)),
  );
}

function clip(text, chars) {
  const value = String(text);
  return value.length > chars ? `${value.slice(0, chars - 1)}…` : value;
}

/** The drawing of `model`'s steps; `remote` maps a remote agent's name to its peer. */
export function drawRun(model, remote) {
  const columns = model.columns.map((labels) => labels.map((label) => model.steps.get(label)));
  const rows = Math.max(1, ...columns.map((c) => c.length));
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y;
  const width = PAD * 2 + (columns.length + 2) * NODE_W + (columns.length + 1) * GAP_X;
  const centre = (count, index) => PAD + (height - PAD * 2 - (count * NODE_H + (count - 1) * GAP_Y)) / 2 + index * (NODE_H + GAP_Y);
  const xOf = (column) => PAD + column * (NODE_W + GAP_X);
  const edges = s("g", { class: "edges" });
  const nodes = s("g", { class: "nodes" });
  const layers = [[{ y: centre(1, 0) }], ...columns.map((c) => c.map((_, i) => ({ y: centre(c.length, i) })))];
  const ended = ["completed", "failed", "canceled", "rejected"].includes(model.state);
  if (ended) layers.push([{ y: centre(1, 0) }]);
  for (let column = 1; column < layers.length; column += 1) {
    for (const from of layers[column - 1]) {
      for (const to of layers[column]) {
        edges.appendChild(
          s("line", {
            x1: xOf(column - 1) + NODE_W,
            y1: from.y + NODE_H / 2,
            x2: xOf(column),
            y2: to.y + NODE_H / 2,
          }),
        );
      }
    }
  }
  nodes.appendChild(box(xOf(0), layers[0][0].y, "request", model.task?.id ? `task ${clip(model.task.id, 13)}` : "", "node start"));
  columns.forEach((steps, column) => {
    steps.forEach((step, row) => {
      const peer = remote.get(step.agent);
      const classes = `node step state-${step.state}${peer ? " remote" : ""}`;
      const g = box(xOf(column + 1), layers[column + 1][row].y, step.agent, peer ? `${step.label} · via ${peer}` : step.label, classes, {
        "data-step": step.label,
        "data-agent": step.agent,
        "data-state": step.state,
        "data-history": step.history.join(" "),
        "data-source": step.source,
      });
      g.appendChild(s("title", {}, `${step.label} · ${step.agent}: ${step.state}${step.lines.length ? ` — ${step.lines.at(-1)}` : ""}`));
      nodes.appendChild(step.taskId ? s("a", { href: taskPath(step.agent, step.taskId), class: "step-link" }, g) : g);
    });
  });
  if (ended) {
    nodes.appendChild(box(xOf(columns.length + 1), layers.at(-1)[0].y, "result", model.state, `node end state-${model.state}`));
  }
  return s(
    "svg",
    { class: "drawing", "data-role": "drawing", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "run drawing" },
    edges,
    nodes,
  );
}
