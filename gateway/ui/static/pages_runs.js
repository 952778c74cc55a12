// Runs and tasks: the caller's tasks on every agent, a page at a time (the dashboard API pages
// them, so the page costs the same with ten tasks or a million; while some of the page's tasks
// run, the same page is fetched again, one request at a time: ListPoll), and one task's live page.

import { badge, h, replace, short, stateName, when } from "./dom.js";
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
  const query = { limit: PAGE, cursor, ...filter[2] };
  const page = await api("/tasks", query);
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
  const listing = h("div", { "data-role": "listing" });
  replace(root,
    h("h1", {}, "Runs and tasks"),
    h("p", { class: "tabs" }, FILTERS.map(([id, label]) => h("a", { href: `${UI}runs?show=${id}`, class: id === filter[0] ? "active" : "" }, label))),
    find,
    listing,
    h("p", { class: "pager" },
      cursor ? h("a", { href: link({}), "data-role": "newest" }, "← Newest") : null,
      " ",
      page.next ? h("a", { href: link({ cursor: page.next }), "data-role": "older" }, "Older →") : null));
  const poll = new ListPoll(() => api("/tasks", query), (next) => drawListing(listing, app, next, poll));
  drawListing(listing, app, page, poll);
  document.body.dataset.loaded = "runs";
  return () => poll.stop();
}

const LIVE = new Set(["submitted", "working"]);
const POLL_FIRST_MS = 1500;
const POLL_MAX_MS = 10_000;

/**
 * While any task listed is running, the same page of the list is fetched again (one request each
 * time, whatever the history), first after 1.5 s, then a little later each time nothing changed
 * (at most every 10 s); it stops when none is running or another page opens.
 */
class ListPoll {
  constructor(fetchPage, draw) {
    this.fetchPage = fetchPage;
    this.draw = draw;
    this.delay = POLL_FIRST_MS;
    this.timer = null;
    this.stopped = false;
    this.last = "";
  }

  /** After drawing `page`: poll again if a task of it is running. */
  after(page) {
    const seen = JSON.stringify(page.tasks.map((t) => [t.id, t.state, t.updatedNs]));
    this.delay = seen === this.last ? Math.min(this.delay * 1.5, POLL_MAX_MS) : POLL_FIRST_MS;
    this.last = seen;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || !page.tasks.some((t) => LIVE.has(stateName(t.state)))) return false;
    this.timer = setTimeout(() => this.tick(), this.delay);
    return true;
  }

  async tick() {
    this.timer = null;
    try {
      const page = await this.fetchPage();
      if (!this.stopped) this.draw(page);
    } catch {
      if (!this.stopped) this.timer = setTimeout(() => this.tick(), POLL_MAX_MS); // a blip: try again later
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}

function drawListing(listing, app, page, poll) {
  const operator = app.me?.operator && app.me?.auth;
  const polling = poll.after(page);
  replace(listing,
    page.tasks.length
      ? h("table", { "data-role": "tasks" },
        h("thead", {}, h("tr", {}, ["task", "agent", "state", "updated", "summary"].concat(operator ? ["owner"] : []).map((t) => h("th", {}, t)))),
        h("tbody", {}, page.tasks.map((t) => h("tr", { "data-task": t.id },
          h("td", {}, h("a", { href: taskPath(t.agent, t.id) }, short(t.id)), t.run ? h("span", { class: "tag" }, "run") : null,
            t.parent ? h("span", { class: "tag" }, "step") : null),
          h("td", {}, h("a", { href: agentPath(t.agent) }, t.agent)),
          h("td", {}, badge(t.state)),
          h("td", {}, when(t.updatedNs / 1e6)),
          h("td", { class: "summary" }, t.summary),
          operator ? h("td", {}, t.owner || "(anonymous)") : null))))
      : h("p", { class: "muted", "data-role": "no-tasks" }, "No tasks yet."),
    polling ? h("p", { class: "meta", "data-role": "list-live" }, "Some of these are running: this list refreshes itself until they end.") : null);
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
