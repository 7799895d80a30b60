// Calls to the IdeaSnap API from the page: errors become ApiFailure with the API's code.
import { ApiFailure } from "./messages.js";

export async function failureFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && body.error ? body.error : {};
  const retry = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new ApiFailure(response.status, error.code || `http_${response.status}`, error.message || "", {
    retryAfter: Number.isNaN(retry) ? null : retry,
    details: error.details || null,
    requestId: error.request_id || response.headers.get("X-Request-ID"),
    body,
  });
}

export async function request(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { credentials: "same-origin", ...options });
  } catch (cause) {
    throw new ApiFailure(0, "network", String(cause));
  }
  if (!response.ok) throw await failureFrom(response);
  return response;
}
