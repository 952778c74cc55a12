// A task's page: its state, live drawing and steps (a workflow run), messages and artifacts, and
// what the caller can do: cancel it, or answer the question it asks (input-required). Fed by the
// same A2A stream clients use (SendStreamingMessage, SubscribeToTask), followed with
// reconnection (session.follow).

import { badge, h, replace, short, when } from "./dom.js";
import { drawRun } from "./drawing.js";
import { taskPath } from "./links.js";
import { RunModel, textOf } from "./run_model.js";
import { DRAWN, shapeSections } from "./run_shapes.js";
import { GatewayError, api, follow, isInterrupted, isTerminal, rpc, stream } from "./session.js";

function partView(part) {
  if (typeof part.text === "string") return h("pre", { class: "text" }, part.text);
  if (part.data !== undefined) {
    const json = JSON.stringify(part.data, null, 2);
    const pre = h("pre", { class: "data" }, json);
    return json.length > 600 ? h("details", {}, h("summary", {}, `data (JSON, ${json.length} characters)`), pre) : pre;
  }
  if (part.raw !== undefined || part.url !== undefined) {
    const size = part.raw ? `${Math.floor((part.raw.length * 3) / 4)} bytes` : part.url;
    return h("p", { class: "file" }, `file ${part.filename || "(unnamed)"} · ${part.mediaType || "?"} · ${size}`);
  }
  return h("pre", { class: "data" }, JSON.stringify(part));
}

/** The artifacts shown as such: for a run, not those its shape draws (the magentic ledgers). */
function shownArtifacts(model, isRun) {
  return model.outputs().filter((a) => !(isRun && DRAWN.has(a.artifactId)));
}

function newMessage(text, files, task) {
  const parts = [];
  if (text.trim()) parts.push({ text });
  parts.push(...files);
  const message = { role: "ROLE_USER", messageId: crypto.randomUUID(), parts };
  if (task) {
    message.taskId = task.id;
    message.contextId = task.contextId;
  }
  return message;
}

/** A file input's files as A2A parts ({raw (base64), filename, mediaType}). */
export async function fileParts(input) {
  const parts = [];
  for (const file of input?.files || []) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    parts.push({ raw: btoa(text), filename: file.name, mediaType: file.type || guessType(file.name) });
  }
  return parts;
}

function guessType(name) {
  if (name.endsWith(".py")) return "text/x-python";
  if (name.endsWith(".json")) return "application/json";
  return "text/plain";
}

/**
 * Send `text` and files to `agent` as a new task, streaming; resolves with an opener for
 * session.follow once the first event names the task (so the page can show it at its URL).
 */
export function startTask(agent, message, signal) {
  return new Promise((resolve, reject) => {
    const early = [];
    const replies = [];
    let deliver = (event) => early.push(event);
    let started = false;
    const done = stream(agent, "SendStreamingMessage", { message }, (event) => {
      if (event.message) replies.push(event.message);
      deliver(event);
      const task = event.task || event.statusUpdate || event.artifactUpdate;
      if (!started && task) {
        started = true;
        resolve({
          taskId: event.task ? event.task.id : task.taskId,
          open: async (onEvent) => {
            deliver = onEvent;
            for (const e of early.splice(0)) onEvent(e);
            await done;
          },
        });
      }
    }, signal);
    done.then(
      () => {
        if (!started) resolve({ taskId: "", replies }); // answered with a message, no task to follow
      },
      (error) => {
        if (!started) reject(error);
      },
    );
  });
}

export class TaskView {
  constructor(root, agent, taskId, context) {
    this.root = root;
    this.agent = agent;
    this.taskId = taskId;
    this.context = context; // {remote: Map(agent -> peer), workflows: Set(agent)}
    this.model = new RunModel();
    this.connection = "connecting";
    this.error = null;
    this.controller = new AbortController();
    this.notice = "";
  }

  stop() {
    this.controller.abort();
  }

  /** Follow the task (from `first`, a stream already open, when given) and draw it as it changes. */
  async run(first = null) {
    const on = {
      task: (task) => {
        this.model.setTask(task);
        this.render();
      },
      event: (event) => {
        this.model.apply(event);
        this.render();
      },
      settled: () => isTerminal(this.model.task) || isInterrupted(this.model.task),
      connection: (state, wait) => {
        this.connection = state === "reconnecting" ? `reconnecting in ${(wait / 1000).toFixed(1)} s` : state;
        this.render();
      },
    };
    try {
      await follow(this.agent, this.taskId, on, this.controller.signal, first);
    } catch (error) {
      if (error instanceof GatewayError && error.notFound && this.context.operator && (await this.asOperator())) return;
      this.error = error;
      this.render();
    }
  }

  /** Another caller's task, for an operator: read once through the dashboard API (A2A shows only one's own). */
  async asOperator() {
    try {
      const found = await api("/task", { agent: this.agent, id: this.taskId });
      this.owner = found.owner;
      this.connection = "read-only";
      this.model.setTask(found.task);
      this.render();
      return true;
    } catch {
      return false;
    }
  }

  async cancel() {
    try {
      const task = await rpc(this.agent, "CancelTask", { id: this.taskId });
      this.model.setTask(task);
      this.notice = "";
    } catch (error) {
      this.notice = `cancel refused: ${error.message}`;
    }
    this.render();
  }

  async answer(form) {
    const text = form.elements.answer.value;
    if (!text.trim()) return;
    const message = newMessage(text, [], this.model.task);
    form.elements.answer.disabled = true;
    try {
      const started = await startTask(this.agent, message, this.controller.signal);
      this.notice = "";
      this.run(started.open);
    } catch (error) {
      this.notice = `answer refused: ${error.message}`;
      this.render();
    }
  }

  render() {
    if (this.controller.signal.aborted) return; // another page is showing
    if (this.error) {
      const notFound = this.error instanceof GatewayError && this.error.notFound;
      replace(
        this.root,
        h("h1", {}, `${this.agent} · task ${short(this.taskId)}`),
        h("p", { class: "error", "data-role": notFound ? "not-found" : "error" },
          notFound ? `Task ${this.taskId} not found on ${this.agent}.` : `Could not load the task: ${this.error.message}`),
      );
      document.body.dataset.loaded = "task";
      return;
    }
    const model = this.model;
    const task = model.task;
    if (!task) {
      replace(this.root, h("p", { class: "muted" }, "Loading…"));
      return;
    }
    const ended = isTerminal(task);
    const waiting = isInterrupted(task);
    const isRun = this.context.workflows.has(this.agent) || model.steps.size > 0;
    replace(
      this.root,
      h("h1", {}, `${this.agent} · ${isRun ? "run" : "task"} `, h("code", { "data-role": "task-id" }, task.id)),
      h("p", { class: "meta" },
        badge(task.status?.state),
        " ",
        h("span", { class: `connection conn-${this.connection.split(" ")[0]}`, "data-role": "connection" },
          waiting && this.connection === "ended" ? "waiting for your answer" : this.connection),
        task.status?.timestamp ? ` · updated ${when(task.status.timestamp)}` : "",
        ` · ${model.events} streamed event(s)`),
      this.owner !== undefined ? h("p", { class: "meta", "data-role": "owner" },
        `${this.owner || "the anonymous caller"}'s task, shown to you as an operator (read-only; reload to refresh)`) : null,
      this.parentLink(task),
      this.notice ? h("p", { class: "error", "data-role": "notice" }, this.notice) : null,
      ended || this.owner !== undefined ? null : h("p", { class: "actions" },
        h("button", { type: "button", class: "danger", "data-role": "cancel", on: { click: () => this.cancel() } }, "Cancel")),
      waiting && this.owner === undefined ? this.answerForm(task) : null,
      isRun && model.steps.size ? this.runSection(model) : null,
      isRun ? shapeSections(model) : null,
      // A running run's status message is its latest progress, which the steps and the run log already show.
      task.status?.message && !waiting && !(isRun && model.steps.size && !ended) && !(isRun && ended && shownArtifacts(model, isRun).length) ? h("section", { "data-role": "status-message" },
        h("h2", {}, "Status message"), ...(task.status.message.parts || []).map(partView)) : null,
      this.outputs(model, isRun, ended),
      this.history(task, model),
    );
    document.body.dataset.loaded = ended || waiting ? "task" : "task-live";
  }

  parentLink(task) {
    const first = (task.history || [])[0];
    const parent = first?.metadata?.switchboard?.parent_task_id;
    if (!parent) return null;
    return h("p", { class: "meta" }, "step of run ", h("a", { href: taskPath("_", parent), "data-role": "parent" }, short(parent)));
  }

  answerForm(task) {
    const question = textOf(task.status?.message) || "The agent asks for input.";
    const form = h("form", { class: "answer", "data-role": "answer-form", on: { submit: (e) => { e.preventDefault(); this.answer(form); } } },
      h("p", { class: "question", "data-role": "question" }, question),
      h("label", {}, "Your answer ", h("input", { name: "answer", type: "text", required: true, autocomplete: "off" })),
      " ",
      h("button", { type: "submit" }, "Answer"));
    return form;
  }

  runSection(model) {
    const rows = [...model.steps.values()].map((step) => {
      // Seen to start and end in different events of the stream (one event holding both says nothing of the time).
      const took = step.seenAt && step.endedAt > step.seenAt ? `${((step.endedAt - step.seenAt) / 1000).toFixed(2)} s` : "";
      return h("tr", { "data-step-row": step.label },
        h("td", {}, step.label),
        h("td", {}, step.taskId ? h("a", { href: taskPath(step.agent, step.taskId) }, step.agent) : step.agent),
        h("td", {}, badge(step.state)),
        h("td", {}, step.output || step.progress || step.lines.at(-1) || ""),
        h("td", {}, took));
    });
    return h("section", { class: "run" },
      h("h2", {}, "Run"),
      h("div", { class: "drawing-box" }, drawRun(model, this.context.remote)),
      h("table", { "data-role": "steps" },
        h("thead", {}, h("tr", {}, h("th", {}, "step"), h("th", {}, "agent"), h("th", {}, "state"), h("th", {}, "output or progress"), h("th", {}, "took"))),
        h("tbody", {}, rows)),
      model.runLines.length ? h("details", {}, h("summary", {}, `run log (${model.runLines.length} lines)`),
        h("pre", { class: "text" }, model.runLines.map((l) => l.text).join("\n"))) : null);
  }

  outputs(model, isRun, ended) {
    const artifacts = shownArtifacts(model, isRun);
    if (!artifacts.length) return null;
    if (isRun) {
      if (!ended) return null;
      const parts = artifacts.flatMap((a) => a.parts || []);
      const data = parts.filter((p) => p.data !== undefined);
      return h("section", { class: "report", "data-role": "report" }, h("h2", {}, "Report"),
        ...parts.filter((p) => p.data === undefined).map(partView),
        data.length ? h("details", {}, h("summary", {}, "the report's data (JSON)"), ...data.map(partView)) : null);
    }
    return h("section", { "data-role": "artifacts" }, h("h2", {}, "Artifacts"),
      ...artifacts.map((a) => h("div", { class: "artifact" }, h("h3", {}, a.name || a.artifactId), ...(a.parts || []).map(partView))));
  }

  history(task, model) {
    const messages = (task.history || []).filter((m) => m.role === "ROLE_USER" || model.steps.size === 0);
    if (!messages.length) return null;
    return h("section", { "data-role": "history" }, h("h2", {}, "Messages"),
      h("ol", { class: "history" }, messages.map((m) =>
        h("li", { class: m.role === "ROLE_USER" ? "user" : "agent" },
          h("span", { class: "role" }, m.role === "ROLE_USER" ? "you" : this.agent),
          ...(m.parts || []).map(partView)))));
  }
}

export { newMessage };
