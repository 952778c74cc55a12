// What some patterns keep besides their steps, drawn on the run's page as it arrives:
//
// - magentic: the run's "ledgers" artifact (replaced by the pattern each time a ledger arrives):
//   the task ledger (facts, plan), each iteration's progress ledger (speaker, instruction,
//   satisfied / progress / loop, the stall it counted as) and the re-plans;
// - work queue: the batch's items, from the stream as it is: the first progress line ("N items
//   over M agents"), each attempt's step ("item i/N, attempt k" · agent: started / completed /
//   failed), the pattern's news ("item i/N ... re-queued", "... dead-lettered ...", "... done by X"),
//   the request's items (their text and priority), and at the end the outcome's data (items).

import { h } from "./dom.js";

export const LEDGERS = "ledgers";
const ATTEMPT = /^item (\d+)\/(\d+), attempt (\d+)$/;
const NEWS = /^item (\d+)\/(\d+) (.*)$/;
const BATCH = /^(\d+) items over \d+ agents?\b/;

/** The artifacts a shape draws (left out of the report). */
export const DRAWN = new Set([LEDGERS]);

/** The sections drawing `model`'s pattern-specific shape (none for a run without one). */
export function shapeSections(model) {
  return [ledgerSection(model), queueSection(model)].filter(Boolean);
}

function dataOf(artifact) {
  return (artifact?.parts || []).find((p) => p.data !== undefined)?.data;
}

function yesNo(value, good) {
  const cls = value === good ? "ok" : "bad";
  return h("span", { class: `flag flag-${cls}` }, value ? "yes" : "no");
}

// -- magentic -----------------------------------------------------------------------------------

function ledgerSection(model) {
  const view = dataOf(model.artifacts.get(LEDGERS));
  if (!view || typeof view !== "object") return null;
  const task = view.task_ledger || {};
  const stalls = new Map((view.stalls || []).map((s) => [s.iteration, s]));
  const plans = view.plans || [];
  const rows = (view.progress_ledgers || []).map((ledger) => {
    const stall = stalls.get(ledger.iteration);
    return h("tr", { "data-ledger-row": ledger.iteration, "data-stalled": stall ? "yes" : "no" },
      h("td", {}, String(ledger.iteration)),
      h("td", {}, ledger.valid === false ? h("em", {}, "no ledger in the reply") : ledger.speaker || "—"),
      h("td", {}, ledger.instruction || ledger.final_answer || ""),
      h("td", {}, yesNo(Boolean(ledger.satisfied), true)),
      h("td", {}, yesNo(Boolean(ledger.progress), true)),
      h("td", {}, yesNo(Boolean(ledger.in_loop), false)),
      h("td", { class: stall ? "bad" : "" }, stall ? `stall ${stall.count}: ${stall.reason}` : ""));
  });
  const replans = plans.filter((p) => p.iteration > 0);
  return h("section", { class: "ledgers", "data-role": "ledgers" },
    h("h2", {}, "Ledgers ", h("small", {}, view.replans ? `re-planned ${view.replans} time(s)` : "")),
    h("div", { class: "ledger", "data-role": "task-ledger" },
      h("h3", {}, "Task ledger", replans.length ? ` (since round ${replans.at(-1).iteration})` : ""),
      h("p", { class: "meta" }, "Facts"),
      h("ul", { "data-role": "facts" }, (task.facts || []).map((fact) => h("li", {}, fact))),
      h("p", { class: "meta" }, "Plan"),
      h("ol", { "data-role": "plan" }, (task.plan || []).map((step) => h("li", {}, step)))),
    plans.length > 1 ? h("details", { "data-role": "plans" }, h("summary", {}, `every plan (${plans.length})`),
      plans.map((p) => h("div", {}, h("p", { class: "meta" }, p.iteration ? `re-plan in round ${p.iteration}` : "first plan"),
        h("ol", {}, (p.plan || []).map((step) => h("li", {}, step)))))) : null,
    h("h3", {}, "Progress ledgers"),
    rows.length
      ? h("table", { "data-role": "progress-ledgers" },
        h("thead", {}, h("tr", {}, ["round", "next speaker", "instruction", "satisfied", "progress", "in a loop", "stall"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows))
      : h("p", { class: "muted" }, "The manager has not kept a progress ledger yet."));
}

// -- work queue ---------------------------------------------------------------------------------

/** The batch's items as the stream shows them so far, or null when the run is not a work queue. */
export function queueItems(model) {
  let total = 0;
  const attempts = new Map(); // item number -> [{attempt, agent, state}]
  for (const step of model.steps.values()) {
    const found = step.label.match(ATTEMPT);
    if (!found) continue;
    total = Number(found[2]);
    const list = attempts.get(Number(found[1])) || [];
    list.push({ attempt: Number(found[3]), agent: step.agent, state: step.state });
    attempts.set(Number(found[1]), list);
  }
  const news = new Map();
  for (const { text } of model.runLines) {
    const batch = text.match(BATCH);
    if (batch) total = Number(batch[1]);
    const found = text.match(NEWS);
    if (found) {
      total = Number(found[2]);
      news.set(Number(found[1]), found[3]);
    }
  }
  const outcome = outcomeItems(model);
  if (outcome) total = outcome.length;
  if (!total) return null;
  const requested = requestItems(model.task);
  const items = [];
  for (let number = 1; number <= total; number += 1) {
    const value = requested[number - 1];
    const tries = (attempts.get(number) || []).sort((a, b) => a.attempt - b.attempt);
    const item = { number, text: itemText(value), priority: priorityOf(value), attempts: tries.length, ...status(tries, news.get(number)) };
    const reported = outcome?.find((r) => r.index === number - 1);
    if (reported) {
      item.attempts = (reported.attempts || []).length;
      Object.assign(item, reported.status === "done"
        ? { status: "done", agent: reported.agent, said: `done by ${reported.agent}` }
        : { status: "dead-lettered", agent: reported.agent, said: `dead-lettered: ${(reported.attempts || []).at(-1)?.error || reported.output || ""}` });
      if (value === undefined) item.text = itemText(reported.item);
    }
    items.push(item);
  }
  return items;
}

function status(tries, said) {
  const last = tries.at(-1);
  if (last && ["working", "submitted"].includes(last.state)) {
    return { status: "running", agent: last.agent, said: `running on ${last.agent} (attempt ${last.attempt})` };
  }
  if (last?.state === "completed" || said?.startsWith("done by")) return { status: "done", agent: last?.agent || "", said: `done by ${last?.agent || "?"}` };
  if (said?.startsWith("dead-lettered")) return { status: "dead-lettered", agent: last?.agent || "", said };
  if (said?.endsWith("re-queued")) return { status: "re-queued", agent: last?.agent || "", said: `re-queued (${last?.state || "failed"} on ${last?.agent || "?"})` };
  if (last) return { status: "re-queued", agent: last.agent, said: `${last.state} on ${last.agent}` };
  return { status: "pending", agent: "", said: "pending" };
}

/** The outcome's items (the result artifact's data, or a failed run's final status data). */
function outcomeItems(model) {
  const parts = [...(model.artifacts.get("result")?.parts || []), ...(model.task?.status?.message?.parts || [])];
  const data = parts.map((p) => p.data).find((d) => d && Array.isArray(d.items) && Array.isArray(d.dead_letter));
  return data ? data.items.filter((r) => r && typeof r.index === "number") : null;
}

/** The request's items: ``items`` of its first data part that has them, else its text's non-empty lines. */
function requestItems(task) {
  const request = (task?.history || []).find((m) => m.role === "ROLE_USER");
  const parts = request?.parts || [];
  const listed = parts.map((p) => p.data).find((d) => d && Array.isArray(d.items));
  if (listed) return listed.items;
  return parts.filter((p) => typeof p.text === "string").flatMap((p) => p.text.split("\n")).map((l) => l.trim()).filter(Boolean);
}

function itemText(value) {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  if (value && typeof value.text === "string") return value.text;
  return JSON.stringify(value);
}

function priorityOf(value) {
  const p = value && typeof value === "object" ? value.priority : undefined;
  return typeof p === "number" ? p : 0;
}

function queueSection(model) {
  const items = queueItems(model);
  if (!items) return null;
  const counts = {};
  for (const item of items) counts[item.status] = (counts[item.status] || 0) + 1;
  return h("section", { class: "queue", "data-role": "work-queue" },
    h("h2", {}, "Work queue ", h("small", {}, Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(" · "))),
    h("table", { "data-role": "queue-items" },
      h("thead", {}, h("tr", {}, ["item", "text", "priority", "status", "attempts"].map((t) => h("th", {}, t)))),
      h("tbody", {}, items.map((item) => h("tr", { "data-item": item.number, "data-status": item.status, "data-agent": item.agent },
        h("td", {}, String(item.number)),
        h("td", { class: "summary" }, item.text),
        h("td", {}, String(item.priority)),
        h("td", {}, h("span", { class: `badge queue-${item.status}` }, item.said)),
        h("td", {}, String(item.attempts)))))));
}
