// A task as the dashboard draws it, rebuilt from A2A events: the task, its artifacts, and for a
// workflow run its steps, read from the run's own stream: progress lines ("<label> · <agent>:
// <text>", one text part each), the "steps" artifact (a part per step output, linked to its
// child task in metadata.switchboard) and the final status's metadata.switchboard.steps.
//
// Steps are laid out in columns by when they ran: a step that starts while none runs opens a
// new column, one that starts while others run joins theirs. So a pipeline draws as a chain, a
// fan-out as one column and its merge as the next, group-chat rounds and handoff hops in turn,
// whatever the pattern, exactly as the run happened.

import { stateName } from "./dom.js";

const ENDINGS = /^(completed|failed|canceled|rejected|input-required)\b/;
const NOT_NEWS = /^(started|answer sent)$/;

export class RunModel {
  constructor() {
    this.task = null;
    this.artifacts = new Map();
    this.steps = new Map(); // label -> step
    this.columns = [];
    this.running = new Set();
    this.runLines = [];
    this.events = 0;
  }

  get state() {
    return stateName(this.task?.status?.state);
  }

  /** A whole task (GetTask, the first event of a stream): everything is rebuilt from it. */
  setTask(task, source = "history") {
    const live = this.task && this.task.id === task.id ? this.steps : null;
    this.task = structuredClone(task);
    this.artifacts = new Map((task.artifacts || []).map((a) => [a.artifactId, structuredClone(a)]));
    this.steps = new Map();
    this.columns = [];
    this.running = new Set();
    this.runLines = [];
    for (const message of task.history || []) {
      if (message.role === "ROLE_AGENT") this.lines(message, source);
    }
    const status = task.status?.message;
    if (status && working(task.status) && !(task.history || []).some((m) => m.messageId === status.messageId)) {
      this.lines(status, source);
    }
    for (const artifact of this.artifacts.values()) this.linkParts(artifact);
    this.linkAll(task.metadata);
    if (live) {
      for (const [label, step] of this.steps) {
        const seen = live.get(label);
        if (seen) Object.assign(step, { source: seen.source, seenAt: seen.seenAt, endedAt: seen.endedAt });
      }
    }
  }

  /** One StreamResponse. */
  apply(event) {
    this.events += 1;
    if (event.task) {
      this.setTask(event.task, "stream");
    } else if (event.statusUpdate) {
      const update = event.statusUpdate;
      if (!this.task) this.task = { id: update.taskId, contextId: update.contextId, history: [] };
      if (this.task.status?.message) this.task.history = [...(this.task.history || []), this.task.status.message];
      this.task.status = update.status;
      if (update.status?.message && working(update.status)) this.lines(update.status.message, "stream");
      if (update.metadata) this.task.metadata = { ...(this.task.metadata || {}), ...update.metadata };
      this.linkAll(update.metadata);
    } else if (event.artifactUpdate) {
      const { artifact, append } = event.artifactUpdate;
      const held = this.artifacts.get(artifact.artifactId);
      if (append && held) {
        held.parts = [...(held.parts || []), ...(artifact.parts || [])];
      } else {
        this.artifacts.set(artifact.artifactId, structuredClone(artifact));
      }
      this.linkParts(artifact);
    } else if (event.message) {
      this.runLines.push({ text: textOf(event.message), at: Date.now() });
    }
  }

  lines(message, source) {
    for (const part of message.parts || []) {
      if (typeof part.text !== "string") continue;
      // One line per part, except a nested run's progress, forwarded as one part: its first line names
      // the step ("<label> · <agent>: ...") and the lines after it are that step's own run's progress.
      const [first, ...nested] = part.text.split("\n").filter((line) => line.trim());
      if (first === undefined) continue;
      const step = this.line(first, source);
      for (const line of nested) {
        if (step) {
          step.lines.push(line);
          step.progress = line;
        } else {
          this.line(line, source);
        }
      }
    }
  }

  line(text, source) {
    const at = text.indexOf(" · ");
    const colon = at >= 0 ? text.indexOf(": ", at + 3) : -1;
    if (at < 0 || colon < 0) {
      this.runLines.push({ text, at: Date.now() });
      return null;
    }
    const label = text.slice(0, at);
    const agent = text.slice(at + 3, colon);
    const said = text.slice(colon + 2);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(agent)) {
      this.runLines.push({ text, at: Date.now() });
      return null;
    }
    const step = this.step(label, agent, source);
    step.lines.push(said);
    if (!ENDINGS.test(said) && !NOT_NEWS.test(said)) step.progress = said;
    const ending = said.match(ENDINGS);
    this.move(step, ending ? ending[1] : "working");
    return step;
  }

  step(label, agent, source) {
    let step = this.steps.get(label);
    if (step) return step;
    const numbered = label.match(/^step (\d+)/);
    step = {
      label,
      agent,
      number: numbered ? Number(numbered[1]) : null,
      taskId: "",
      output: "",
      progress: "",
      state: "submitted",
      history: [],
      lines: [],
      source,
      seenAt: source === "stream" ? Date.now() : null,
      endedAt: null,
    };
    const column = this.columns[this.columns.length - 1];
    if (!column || (this.running.size === 0 && column.length)) this.columns.push([label]);
    else column.push(label);
    this.steps.set(label, step);
    return step;
  }

  move(step, state) {
    if (step.state === state) return;
    step.state = state;
    step.history.push(state);
    if (state === "working") {
      this.running.add(step.label);
    } else {
      this.running.delete(step.label);
      if (step.source === "stream") step.endedAt = Date.now();
    }
  }

  linkParts(artifact) {
    if (artifact.artifactId !== "steps") return;
    for (const part of artifact.parts || []) {
      const step = this.link(part.metadata?.switchboard);
      if (step && typeof part.text === "string" && !step.output) step.output = part.text.trim().split("\n")[0];
      else if (step && part.data !== undefined && !step.output) step.output = clipped(JSON.stringify(part.data), 140);
    }
  }

  linkAll(metadata) {
    for (const entry of metadata?.switchboard?.steps || []) this.link(entry);
  }

  /** A step's link to its child task: {step, agent, state, task_id, label (a step's output has it)}. */
  link(entry) {
    if (!entry || typeof entry.agent !== "string" || entry.step === undefined) return null;
    const number = Number(entry.step);
    const label = typeof entry.label === "string" && entry.label ? entry.label : null;
    let step = label ? this.steps.get(label) : undefined;
    step ??= [...this.steps.values()].find((s) => s.number === number);
    // Without a label (the final status's links), a step not linked yet: the first of the agent's.
    step ??= [...this.steps.values()].find((s) => s.agent === entry.agent && s.number === null);
    step ??= this.step(label || `step ${number}`, entry.agent, "history");
    step.number = number;
    step.taskId = String(entry.task_id || step.taskId || "");
    if (entry.state && !["working", "submitted"].includes(entry.state)) this.move(step, String(entry.state));
    return step;
  }

  /** The run's result artifact (a workflow) or every artifact but the steps (any task). */
  outputs() {
    return [...this.artifacts.values()].filter((a) => a.artifactId !== "steps");
  }
}

function clipped(text, chars) {
  return text.length > chars ? `${text.slice(0, chars - 1)}…` : text;
}

function working(status) {
  return ["TASK_STATE_WORKING", "TASK_STATE_SUBMITTED"].includes(status?.state);
}

export function textOf(message) {
  return (message?.parts || [])
    .filter((p) => typeof p.text === "string")
    .map((p) => p.text)
    .join("\n");
}
