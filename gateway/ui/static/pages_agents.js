// The agents: every hosted agent and workflow with its card, bindings, skills and the card's
// signature as this browser checks it; an agent's page with a form to try it.

import { h, replace, short } from "./dom.js";
import { agentPath, taskPath } from "./links.js";
import { textOf } from "./run_model.js";
import { fileParts, newMessage, startTask } from "./run_view.js";
import { publicJson } from "./session.js";
import { checkCard } from "./verify.js";

async function cardsAndChecks(app) {
  const [cards, jwks, info] = await Promise.all([publicJson("agents"), publicJson(".well-known/jwks.json"), app.agentInfo()]);
  const checks = await Promise.all(cards.map((card) => checkCard(card, jwks)));
  return cards.map((card, i) => ({ card, check: checks[i], info: info.get(card.name) || {} }));
}

function signature(check) {
  const text = {
    verified: `signature verified · ${check.alg} · key ${short(check.kid)}`,
    invalid: "signature INVALID",
    "unknown-key": `signed by unknown key ${short(check.kid)}`,
    unverifiable: `signed with ${check.alg}, which this browser cannot check`,
    unsigned: "unsigned",
  }[check.state];
  const attrs = { class: `sig sig-${check.state}`, "data-role": "signature", "data-signature": check.state, "data-kid": check.kid, title: check.detail };
  return h("span", attrs, text);
}

function kind(info) {
  if (info.kind === "workflow") {
    return h("span", { class: "kind" }, `workflow · ${info.pattern} over `, info.participants.map((p, i) => [i ? ", " : "", h("a", { href: agentPath(p) }, p)]));
  }
  if (info.origin) {
    return h("span", { class: "kind remote" }, `from peer ${info.origin.peer} · origin card ${info.origin.health}`, info.origin.problem ? ` (${info.origin.problem})` : "");
  }
  return h("span", { class: "kind" }, `local · ${info.kind || "agent"}`);
}

function bindings(card) {
  return h("ul", { class: "bindings", "data-role": "bindings" },
    (card.supportedInterfaces || []).map((i) => h("li", {}, h("span", { class: "binding" }, i.protocolBinding), " ", h("code", {}, i.url))));
}

function skills(card) {
  return h("ul", { class: "skills" }, (card.skills || []).map((skill) =>
    h("li", {}, h("strong", {}, skill.name || skill.id), skill.description ? ` — ${skill.description}` : "",
      skill.examples?.length ? h("p", { class: "examples" }, `e.g. ${skill.examples.join(" · ")}`) : null)));
}

export async function agentsPage(root, app) {
  replace(root, h("p", { class: "muted" }, "Loading agents…"));
  const agents = await cardsAndChecks(app);
  replace(root,
    h("h1", {}, `Agents (${agents.length})`),
    h("div", { class: "cards", "data-role": "agents" }, agents.map(({ card, check, info }) =>
      h("article", { class: "card", "data-agent": card.name },
        h("h2", {}, h("a", { href: agentPath(card.name) }, card.name), " ", h("small", {}, card.version || "")),
        h("p", {}, card.description || ""),
        h("p", { class: "meta" }, kind(info), " · ", signature(check)),
        bindings(card),
        h("details", {}, h("summary", {}, `${(card.skills || []).length} skill(s)`), skills(card))))));
  document.body.dataset.loaded = "agents";
}

export async function agentPage(root, app, name) {
  replace(root, h("p", { class: "muted" }, "Loading…"));
  const agents = await cardsAndChecks(app);
  const found = agents.find((a) => a.card.name === name);
  if (!found) {
    replace(root, h("h1", {}, name), h("p", { class: "error", "data-role": "not-found" }, `No agent named ${name} is hosted here.`));
    document.body.dataset.loaded = "agent";
    return null;
  }
  const { card, check, info } = found;
  const controller = new AbortController();
  const reply = h("div", { "data-role": "reply" });
  const form = h("form", { class: "try", "data-role": "try" },
    h("h2", {}, "Try it"),
    h("label", {}, "Message", h("textarea", { name: "text", rows: 4, placeholder: (card.skills?.[0]?.examples || [])[0] || "" })),
    h("label", {}, "Files ", h("input", { name: "files", type: "file", multiple: true })),
    h("button", { type: "submit" }, "Send"),
    h("p", { class: "error", "data-role": "try-error" }),
    reply);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problem = form.querySelector("[data-role=try-error]");
    problem.textContent = "";
    const message = newMessage(form.elements.text.value, await fileParts(form.elements.files), null);
    if (!message.parts.length) {
      problem.textContent = "Write a message or choose a file.";
      return;
    }
    try {
      const started = await startTask(name, message, controller.signal);
      if (!started.taskId) {
        replace(reply, h("h3", {}, "Reply"), started.replies.map((m) => h("pre", { class: "text" }, textOf(m))));
        return;
      }
      app.handoff = started; // the task page follows this stream first, so nothing streamed is missed
      app.go(taskPath(name, started.taskId), null);
    } catch (error) {
      problem.textContent = `The agent refused the message: ${error.message}`;
    }
  });
  replace(root,
    h("h1", {}, card.name, " ", h("small", {}, card.version || "")),
    h("p", {}, card.description || ""),
    h("p", { class: "meta" }, kind(info), " · ", signature(check)),
    h("p", { class: "meta", "data-role": "signature-detail" }, check.detail),
    h("h2", {}, "Bindings"), bindings(card),
    h("h2", {}, "Skills"), skills(card),
    form,
    h("details", {}, h("summary", {}, "Card JSON"), h("pre", { class: "data" }, JSON.stringify(card, null, 2))));
  document.body.dataset.loaded = "agent";
  return () => {};
}
