// The dashboard: one page that routes in the browser (/ui/, /ui/agents/NAME, /ui/runs,
// /ui/tasks/AGENT/ID, /ui/peers, /ui/operations). Every page loads a bounded, fixed set of
// documents: the public cards and JWKS, one page of the dashboard API, one task.

import { h, replace } from "./dom.js";
import { UI } from "./links.js";
import { agentPage, agentsPage } from "./pages_agents.js";
import { operationsPage, peersPage } from "./pages_operations.js";
import { runsPage, taskPage } from "./pages_runs.js";
import { GatewayError, api, credential, signIn, signOut } from "./session.js";

const main = document.getElementById("main");
const who = document.getElementById("who");
let current = null; // the page's stop(), called when another page opens

const ROUTES = [
  [/^(?:agents\/?)?$/, () => agentsPage],
  [/^agents\/([^/]+)$/, (m) => (root, app) => agentPage(root, app, decodeURIComponent(m[1]))],
  [/^runs$/, () => runsPage],
  [/^tasks\/([^/]+)\/([^/]+)$/, (m) => (root, app) => taskPage(root, app, decodeURIComponent(m[1]), decodeURIComponent(m[2]))],
  [/^peers$/, () => peersPage],
  [/^operations$/, () => operationsPage],
];

const app = {
  me: null,
  info: null,
  go(path, state = null) {
    history.pushState(state, "", path);
    show(state);
  },
  /** Each agent's runtime (kind, pattern, origin), fetched once per page load. */
  async agentInfo() {
    this.info ??= api("/agents").then((list) => new Map(list.map((a) => [a.name, a])));
    return this.info;
  },
  async context() {
    const info = await this.agentInfo();
    const remote = new Map([...info.values()].filter((a) => a.origin).map((a) => [a.name, a.origin.peer || "a peer"]));
    const workflows = new Set([...info.values()].filter((a) => a.kind === "workflow").map((a) => a.name));
    return { remote, workflows, operator: Boolean(this.me?.operator && this.me?.auth) };
  },
};

function loginForm(problem) {
  const form = h("form", { class: "login", "data-role": "login" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Use an API key or an OAuth bearer token of this gateway. It is kept in this tab only, until you close it or sign out."),
    problem ? h("p", { class: "error", "data-role": "login-error" }, problem) : null,
    h("label", {}, "Kind ", h("select", { name: "kind" }, h("option", { value: "apikey" }, "API key"), h("option", { value: "bearer" }, "Bearer token"))),
    h("label", {}, "Credential ", h("input", { name: "credential", type: "password", autocomplete: "off", required: true })),
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    signIn(form.elements.kind.value, form.elements.credential.value.trim());
    await start();
  });
  return form;
}

function header() {
  const links = [["", "Agents"], ["runs", "Runs"], ["peers", "Peers"], ["operations", "Operations"]];
  replace(who,
    h("nav", {}, links.map(([path, label]) => h("a", { href: `${UI}${path}`, "data-nav": path || "agents" }, label))),
    app.me ? h("span", { class: "caller" },
      app.me.auth ? `signed in as ${app.me.caller}${app.me.operator ? " (operator)" : ""} ` : "auth off: every caller is anonymous ",
      app.me.auth ? h("button", { type: "button", class: "link", "data-role": "sign-out", on: { click: () => { signOut(); location.reload(); } } }, "Sign out") : null) : null);
}

async function show(state) {
  current?.();
  current = null;
  delete document.body.dataset.loaded;
  const path = decodeURI(location.pathname).startsWith(UI) ? location.pathname.slice(UI.length) : "";
  const found = ROUTES.map(([pattern, make]) => [path.match(pattern), make]).find(([m]) => m);
  if (!found) {
    replace(main, h("h1", {}, "Not found"), h("p", { "data-role": "not-found" }, `No page at ${location.pathname}.`));
    document.body.dataset.loaded = "missing";
    return;
  }
  const [match, make] = found;
  try {
    current = (await make(match)(main, app, state)) || null;
  } catch (error) {
    if (error instanceof GatewayError && error.unauthenticated) {
      signOut();
      replace(main, loginForm(error.message));
      return;
    }
    replace(main, h("p", { class: "error", "data-role": "error" }, `This page could not load: ${error.message}`));
    document.body.dataset.loaded = "error";
  }
}

async function start() {
  try {
    app.me = await api("/me");
  } catch (error) {
    app.me = null;
    header();
    if (error instanceof GatewayError && error.unauthenticated) {
      const held = credential();
      signOut();
      replace(main, loginForm(held ? error.message : ""));
      document.body.dataset.loaded = "login";
      return;
    }
    replace(main, h("p", { class: "error" }, `The gateway did not answer: ${error.message}`));
    return;
  }
  header();
  await show(history.state);
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const target = new URL(link.getAttribute("href"), location.href);
  if (target.origin !== location.origin || !target.pathname.startsWith(UI)) return;
  event.preventDefault();
  app.go(target.pathname + target.search);
});
window.addEventListener("popstate", (event) => show(event.state));

start();
