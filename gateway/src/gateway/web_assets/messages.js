// What a person is told when something goes wrong, by the API's stable error codes.

export class ApiFailure extends Error {
  constructor(status, code, message, { retryAfter = null, details = null, requestId = null, body = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.details = details;
    this.requestId = requestId;
    this.body = body;
  }
}

export function megabytes(bytes) {
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
}

export function waitText(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "a little later";
  if (seconds < 60) return `in ${seconds} second${seconds === 1 ? "" : "s"}`;
  const when = new Date(Date.now() + seconds * 1000);
  const clock = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (seconds < 3600) {
    const minutes = Math.ceil(seconds / 60);
    return `in ${minutes} minute${minutes === 1 ? "" : "s"} (at ${clock})`;
  }
  const hours = Math.round(seconds / 360) / 10;
  return `at ${clock} (in about ${hours} hours)`;
}

export function explain(failure, { maxUploadBytes } = {}) {
  const limit = maxUploadBytes ? megabytes(maxUploadBytes) : "the limit";
  switch (failure.code) {
    case "payload_too_large":
      return `This photo is too large. Photos can be up to ${limit}; choose a smaller one.`;
    case "unsupported_media_type":
      return "That file is not a photo IdeaSnap can read. Choose a JPEG, PNG, WebP or HEIC image.";
    case "invalid_image":
    case "invalid_multipart":
      return "This image looks damaged or incomplete. Take or choose the photo again.";
    case "image_too_large":
      return "This image has too many pixels to process. Choose a smaller photo.";
    case "missing_image":
      return "Choose a photo first.";
    case "rate_limited":
      return `You are snapping faster than allowed. Try again ${waitText(failure.retryAfter)}.`;
    case "quota_exceeded":
      return `You have used all of today's ideas. You can snap again ${waitText(failure.retryAfter)}.`;
    case "content_blocked":
      return "The AI declined to write about this photo. Try a different photo.";
    case "upstream_unavailable":
    case "circuit_open":
    case "bad_gateway":
    case "upstream_error":
      return `IdeaSnap cannot write ideas right now. Nothing was kept; try again ${waitText(failure.retryAfter)}.`;
    case "upstream_timeout":
    case "storage_timeout":
      return "This took too long and was stopped. Nothing was kept; please try again.";
    case "network":
      return "IdeaSnap could not be reached. Check your connection and try again.";
    case "unauthenticated":
    case "invalid_token":
      return "Your sign-in has expired. Sign in again.";
    default:
      return `Something went wrong (${failure.code}). Please try again.${failure.requestId ? ` Reference: ${failure.requestId}` : ""}`;
  }
}
