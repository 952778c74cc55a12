// How the dashboard talks to the gateway: the caller's credential, the read-only dashboard API,
// A2A JSON-RPC, and A2A's SSE streams (with reconnection).
//
// The credential (an API key or an OAuth bearer token) is kept in sessionStorage: it lives as
// long as this tab and is never written anywhere that outlives it, and it is never a cookie.
// Every request carries it in a header (X-API-Key or Authorization), which a browser never adds
// to a request another site makes: a cross-site request arrives without credentials and is
// refused, so the dashboard needs no CSRF token (and the gateway sets no cookie at all).

const KEY = "switchboard.credential";
const A2A_VERSION = "1.0";

/** The gateway's root URL (the page is served under <root>/ui/). */
export const ROOT = new URL("../../", import.meta.url);

export function url(path) {
  return new URL(path.replace(/^\//, ""), ROOT).toString();
}

export function credential() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function signIn(kind, value) {
  sessionStorage.setItem(KEY, JSON.stringify({ kind, value }));
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

function authHeaders() {
  const held = credential();
  if (!held || !held.value) return {};
  return held.kind === "bearer" ? { Authorization: `Bearer ${held.value}` } : { "X-API-Key": held.value };
}

/** A refusal or failure the gateway answered with (HTTP status, JSON-RPC code, message). */
export class GatewayError extends Error {
  constructor(message, { status = 0, code = 0, reason = "" } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.reason = reason;
  }

  get notFound() {
    return this.status === 404 || this.code === -32001;
  }

  get unauthenticated() {
    return this.status === 401;
  }
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    message = (body.error && (body.error.message || body.error_description)) || body.error_description || message;
  } catch {
    // not JSON: the status line says it
  }
  return new GatewayError(message, { status: response.status });
}

/** GET a dashboard API path (`/ui/api/...`) as JSON. */
export async function api(path, params = {}) {
  const target = new URL(url(`ui/api${path}`));
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, value);
  }
  const response = await fetch(target, { headers: { Accept: "application/json", ...authHeaders() } });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** GET a public JSON document (cards, the JWKS). */
export async function publicJson(path) {
  const response = await fetch(url(path), { headers: { Accept: "application/json" } });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

export function agentUrl(agent) {
  return url(`agents/${encodeURIComponent(agent)}`);
}

let nextId = 1;

function rpcRequest(method, params, signal) {
  return {
    method: "POST",
    signal,
    headers: {
      "Content-Type": "application/json",
      "A2A-Version": A2A_VERSION,
      ...authHeaders(),
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
  };
}

function rpcError(error) {
  const info = Array.isArray(error.data) ? error.data.find((d) => d && d.reason) : null;
  return new GatewayError(error.message || "the gateway refused the request", {
    code: error.code,
    reason: info ? info.reason : "",
  });
}

/** One A2A JSON-RPC call to `agent`; its result, or a GatewayError. */
export async function rpc(agent, method, params, signal) {
  const response = await fetch(agentUrl(agent), rpcRequest(method, params, signal));
  if (!response.ok && !(response.headers.get("content-type") || "").includes("json")) {
    throw await errorOf(response);
  }
  const body = await response.json();
  if (body.error) {
    const error = body.error.code ? rpcError(body.error) : await errorOf(response);
    if (!error.status) error.status = response.status;
    throw error;
  }
  return body.result;
}

/**
 * An A2A streaming call (SendStreamingMessage, SubscribeToTask): calls `onEvent` with each
 * StreamResponse ({task} | {message} | {statusUpdate} | {artifactUpdate}) as it arrives, and
 * returns when the gateway ends the stream. A broken connection throws a TypeError (fetch's);
 * an error the gateway answers with throws a GatewayError.
 */
export async function stream(agent, method, params, onEvent, signal) {
  const init = rpcRequest(method, params, signal);
  init.headers.Accept = "text/event-stream";
  const response = await fetch(agentUrl(agent), init);
  const type = response.headers.get("content-type") || "";
  if (!type.includes("text/event-stream")) {
    if (!type.includes("json")) throw await errorOf(response);
    const body = await response.json();
    if (body.error) throw rpcError(body.error);
    onEvent(body.result);
    return;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue;
      const message = JSON.parse(data);
      if (message.error) throw rpcError(message.error);
      onEvent(message.result);
    }
  }
}

export const RECONNECT_FIRST_MS = 250;
export const RECONNECT_MAX_MS = 8000;

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const TERMINAL_STATES = new Set([
  "TASK_STATE_COMPLETED",
  "TASK_STATE_FAILED",
  "TASK_STATE_CANCELED",
  "TASK_STATE_REJECTED",
]);
const INTERRUPTED_STATES = new Set(["TASK_STATE_INPUT_REQUIRED", "TASK_STATE_AUTH_REQUIRED"]);

export function isTerminal(task) {
  return TERMINAL_STATES.has(task?.status?.state);
}

/** Whether the task waits for the caller (an answer, credentials): nothing streams until they act. */
export function isInterrupted(task) {
  return INTERRUPTED_STATES.has(task?.status?.state);
}

/**
 * Follow a task until it ends or waits for the caller: GetTask, then SubscribeToTask while it
 * runs. When the stream dies (the connection drops, the gateway restarts), wait with exponential
 * back-off (RECONNECT_FIRST_MS doubling to RECONNECT_MAX_MS, with jitter), get the task again and
 * resubscribe. `on.task(task)` gets every full task, `on.event(e)` every streamed event,
 * `on.settled()` says whether the task (as shown) has ended or waits for input, and
 * `on.connection(state, detail)` says "live", "reconnecting" (with the delay in ms) or "ended".
 * `first` is a stream already open (the one that sent the message), followed before anything else.
 * A task that is not the caller's (or does not exist) throws a GatewayError whose notFound is true.
 */
export async function follow(agent, taskId, on, signal, first = null) {
  let delay = RECONNECT_FIRST_MS;
  let pending = first;
  while (!signal.aborted) {
    let heard = false;
    const onEvent = (event) => {
      heard = true;
      delay = RECONNECT_FIRST_MS;
      on.event(event);
    };
    try {
      if (pending) {
        const opened = pending;
        pending = null;
        on.connection("live");
        await opened(onEvent);
      } else {
        const task = await rpc(agent, "GetTask", { id: taskId }, signal);
        on.task(task);
        if (isTerminal(task) || isInterrupted(task)) break;
        on.connection("live");
        await stream(agent, "SubscribeToTask", { id: taskId }, onEvent, signal);
      }
      if (on.settled()) break;
      if (heard) continue; // the stream closed early: get the task again and resubscribe at once
      throw new TypeError("the stream closed without an event");
    } catch (error) {
      if (signal.aborted) break;
      if (error instanceof GatewayError && (error.notFound || error.unauthenticated)) throw error;
      const wait = Math.round(delay * (0.75 + Math.random() * 0.5));
      on.connection("reconnecting", wait);
      await pause(wait, signal);
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    }
  }
  on.connection(signal.aborted ? "closed" : "ended");
}
