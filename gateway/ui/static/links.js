// The dashboard's own URLs (the page routes in the browser; the gateway serves index.html for each).

import { ROOT } from "./session.js";

export const UI = new URL("ui/", ROOT).pathname;

export function taskPath(agent, taskId) {
  return `${UI}tasks/${encodeURIComponent(agent)}/${encodeURIComponent(taskId)}`;
}

export function agentPath(agent) {
  return `${UI}agents/${encodeURIComponent(agent)}`;
}
