// Runs and tasks: the caller's tasks on every agent, a page at a time (the dashboard API pages
// them, so the page costs the same with ten tasks or a million), and one task's live page.

import { badge, h, replace, short, when } from "./dom.js";
import { UI, agentPath, taskPath } from "./links.js";
import { TaskView } from "./run_view.js";
import { api } from "./session.js";

const PAGE = 25;
const FILTERS = [
  ["all", "All tasks", {}],
  ["runs", "Workflow runs", { kind: "runs" }],
  ["active", "Running", { state: "active" }],
];

export async function runsPage(root, app) {
  const params = new URLSearchParams(location.search);
  const filter = FILTERS.find(([id]) => id === params.get("show")) || FILTERS[0];
  const cursor = params.get("cursor") || "";
  const page = await api("/tasks", { limit: PAGE, cursor, ...filter[2] });
  const find = h("form", { class: "find", "data-role": "find" },
    h("label", {}, "Go to task id ", h("input", { name: "id", type: "text", required: true, autocomplete: "off" })),
    h("button", { type: "submit" }, "Open"),
    h("span", { class: "error", "data-role": "find-error" }));
  find.addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = find.elements.id.value.trim();
    const said = find.querySelector("[data-role=find-error]");
    try {
      const found = await api("/tasks", { id, limit: 1 });
      if (found.tasks.length) app.go(taskPath(found.tasks[0].agent, id));
      else said.textContent = ` Task ${id} not found.`;
    } catch (error) {
      said.textContent = ` Could not look the task up: ${error.message}`;
    }
  });
  const link = (extra) => `${UI}runs?${new URLSearchParams({ show: filter[0], ...extra })}`;
  replace(root,
    h("h1", {}, "Runs and tasks"),
    h("p", { class: "tabs" }, FILTERS.map(([id, label]) => h("a", { href: `${UI}runs?show=${id}`, class: id === filter[0] ? "active" : "" }, label))),
    find,
    page.tasks.length
      ? h("table", { "data-role": "tasks" },
        h("thead", {}, h("tr", {}, ["task", "agent", "state", "updated", "summary"].concat(app.me?.operator && app.me?.auth ? ["owner"] : []).map((t) => h("th", {}, t)))),
        h("tbody", {}, page.tasks.map((t) => h("tr", { "data-task": t.id },
          h("td", {}, h("a", { href: taskPath(t.agent, t.id) }, short(t.id)), t.run ? h("span", { class: "tag" }, "run") : null,
            t.parent ? h("span", { class: "tag" }, "step") : null),
          h("td", {}, h("a", { href: agentPath(t.agent) }, t.agent)),
          h("td", {}, badge(t.state)),
          h("td", {}, when(t.updatedNs / 1e6)),
          h("td", { class: "summary" }, t.summary),
          app.me?.operator && app.me?.auth ? h("td", {}, t.owner || "(anonymous)") : null))))
      : h("p", { class: "muted", "data-role": "no-tasks" }, "No tasks yet."),
    h("p", { class: "pager" },
      cursor ? h("a", { href: link({}), "data-role": "newest" }, "← Newest") : null,
      " ",
      page.next ? h("a", { href: link({ cursor: page.next }), "data-role": "older" }, "Older →") : null));
  document.body.dataset.loaded = "runs";
}

export async function taskPage(root, app, agent, taskId) {
  if (agent === "_") {
    const found = await api("/tasks", { id: taskId, limit: 1 });
    if (!found.tasks.length) {
      replace(root, h("h1", {}, `Task ${short(taskId)}`), h("p", { class: "error", "data-role": "not-found" }, `Task ${taskId} not found.`));
      document.body.dataset.loaded = "task";
      return null;
    }
    history.replaceState(null, "", taskPath(found.tasks[0].agent, taskId));
    agent = found.tasks[0].agent;
  }
  const view = new TaskView(root, agent, taskId, await app.context());
  const handoff = app.handoff && app.handoff.taskId === taskId ? app.handoff : null;
  app.handoff = null;
  view.render();
  view.run(handoff ? handoff.open : null);
  return () => view.stop();
}
