// Calls to this coordinator's API (same origin). Errors carry the status and the API's message.

export const SESSION_HEADER = "X-Streamr-Session";

export class ApiError extends Error {
  constructor(status, message, headers, details) {
    super(message);
    this.status = status;
    this.headers = headers;
    this.details = details ?? null;
  }

  get retryAfterMs() {
    const seconds = Number(this.headers?.get("Retry-After"));
    return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : null;
  }
}

/** JSON from ``base + path``; ``token`` is a viewer session token for the session's routes. */
export async function callApi(base, path, { method = "GET", token, body, keepalive } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers[SESSION_HEADER] = token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      keepalive: Boolean(keepalive),
      cache: "no-store",
      credentials: "same-origin",
    });
  } catch (error) {
    throw new ApiError(0, `the coordinator cannot be reached (${error.message})`);
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const message = parsed?.error?.message || `HTTP ${response.status}`;
    throw new ApiError(response.status, message, response.headers, parsed?.error?.details);
  }
  return parsed;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
