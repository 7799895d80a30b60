// The IdeaSnap web app: pick a photo, choose a preset, snap, and read the ideas as they
// arrive (Server-Sent Events when the API streams, one JSON answer otherwise).
import { request, failureFrom } from "./api.js";
import { readEvents } from "./sse.js";
import { ApiFailure, explain } from "./messages.js";

const config = JSON.parse(document.getElementById("ideasnap-config").textContent);
const $ = (id) => document.getElementById(id);
const form = $("snap-form");
const photo = $("photo");
const button = $("snap-button");
let chosen = null;
let previewUrl = null;
let account = null;

function setStatus(text) {
  $("status").textContent = text;
}

function showError(failure) {
  const box = $("error");
  box.textContent = explain(failure, config);
  box.dataset.code = failure.code;
  box.hidden = false;
  setStatus("");
}

function clearError() {
  const box = $("error");
  box.hidden = true;
  box.textContent = "";
  delete box.dataset.code;
}

function choose(file) {
  chosen = file || null;
  clearError();
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  const preview = $("preview");
  if (chosen && chosen.type.startsWith("image/")) {
    previewUrl = URL.createObjectURL(chosen);
    preview.src = previewUrl;
    preview.hidden = false;
  } else {
    preview.hidden = true;
    preview.removeAttribute("src");
  }
  setStatus(chosen ? `Chosen: ${chosen.name}` : "");
}

photo.addEventListener("change", () => choose(photo.files[0]));
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => {
  event.preventDefault();
  zone.classList.add("over");
});
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  if (event.dataTransfer.files.length) choose(event.dataTransfer.files[0]);
});

function fill(select, items, value, label) {
  select.replaceChildren(
    ...items.map((item) => {
      const option = document.createElement("option");
      option.value = item.id || item.code;
      option.textContent = label(item);
      return option;
    }),
  );
  select.value = value;
  select.disabled = false;
}

async function loadPresets() {
  try {
    const presets = await (await request("/v1/presets")).json();
    fill($("template"), presets.templates, presets.defaults.template, (item) => item.name);
    fill($("tone"), presets.tones, presets.defaults.tone, (item) => item.name);
    fill($("language"), presets.languages, presets.defaults.language, (item) => item.name);
  } catch (failure) {
    showError(failure instanceof ApiFailure ? failure : new ApiFailure(0, "network", String(failure)));
  }
}

function resetResult() {
  $("result").hidden = true;
  $("ideas").replaceChildren();
  $("stored").hidden = true;
  $("disclaimer").hidden = true;
  $("meta").textContent = "";
}

function showUpload(upload) {
  $("result").hidden = false;
  const thumb = $("thumbnail");
  if (account && account.signedIn()) {
    // A signed-in person's photo is theirs alone: fetched with their token.
    thumb.removeAttribute("src");
    account.showThumbnail(thumb, upload.id);
  } else {
    thumb.src = upload.urls && upload.urls.thumbnail ? upload.urls.thumbnail : `/v1/uploads/${upload.id}/thumbnail`;
  }
  $("stored-caption").textContent = `Stored ${upload.width}×${upload.height}, metadata removed.`;
  $("stored").hidden = false;
}

function ideaText(idea) {
  return [idea.title, idea.body, (idea.hashtags || []).join(" ")].filter(Boolean).join("\n\n");
}

function showIdea(idea) {
  $("result").hidden = false;
  const item = document.createElement("li");
  item.className = "idea";
  const title = document.createElement("h3");
  title.textContent = idea.title;
  const body = document.createElement("p");
  body.textContent = idea.body;
  const tags = document.createElement("p");
  tags.className = "tags";
  tags.textContent = (idea.hashtags || []).join(" ");
  const copy = document.createElement("button");
  copy.type = "button";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", `Copy “${idea.title}”`);
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(ideaText(idea));
      setStatus(`Copied “${idea.title}”.`);
    } catch {
      setStatus("Copying is not allowed here; select the text instead.");
    }
  });
  item.append(title, body, tags, copy);
  if (account && account.signedIn()) {
    const edit = document.createElement("button");
    edit.type = "button";
    edit.textContent = "Edit as draft";
    edit.addEventListener("click", () => account.openDraft(config, idea));
    item.append(edit);
  }
  $("ideas").append(item);
  setStatus(`${$("ideas").children.length} idea(s) so far…`);
}

function showDone(done) {
  if (done.disclaimer) {
    $("disclaimer").textContent = done.disclaimer;
    $("disclaimer").hidden = false;
  }
  const made = done.provider === "local" ? "the offline provider" : `${done.provider} ${done.model || ""}`.trim();
  $("meta").textContent = `Written by ${made}${done.cached ? " (from cache)" : ""}.`;
  setStatus(`${$("ideas").children.length} ideas ready.`);
}

async function snap(event) {
  event.preventDefault();
  clearError();
  if (!chosen) {
    showError(new ApiFailure(400, "missing_image", ""));
    photo.focus();
    return;
  }
  if (chosen.size > config.maxUploadBytes) {
    showError(new ApiFailure(413, "payload_too_large", ""));
    return;
  }
  resetResult();
  button.disabled = true;
  setStatus("Uploading your photo…");
  const body = new FormData();
  body.append("image", chosen, chosen.name || "photo.jpg");
  for (const field of ["template", "tone", "language"]) body.append(field, $(field).value);
  try {
    const auth = account ? await account.authHeaders() : {};
    const response = await request("/v1/snaps", {
      method: "POST",
      body,
      headers: { ...auth, Accept: "text/event-stream, application/json", "Idempotency-Key": crypto.randomUUID() },
    });
    const type = response.headers.get("Content-Type") || "";
    if (type.startsWith("text/event-stream")) {
      setStatus("Writing ideas…");
      for await (const { event: name, data } of readEvents(response.body)) {
        if (name === "upload") showUpload(data);
        else if (name === "idea") showIdea(data.idea);
        else if (name === "done") showDone(data);
        else if (name === "error") {
          const error = data.error || {};
          showError(new ApiFailure(0, error.code || "upstream_error", error.message || "", { requestId: error.request_id }));
        }
      }
    } else {
      const answer = await response.json();
      showUpload(answer.upload);
      for (const idea of answer.ideas) showIdea(idea);
      showDone(answer);
    }
    $("result-heading").focus({ preventScroll: true });
  } catch (failure) {
    showError(failure instanceof ApiFailure ? failure : new ApiFailure(0, "network", String(failure)));
  } finally {
    button.disabled = false;
  }
}

$("result-heading").tabIndex = -1;
form.addEventListener("submit", snap);
loadPresets();
if (config.firebase) {
  import("./account.js").then(async (module) => {
    const started = await module.startAccount(config);
    account = { ...module, signedIn: started.signedIn };
  });
}
export { failureFrom };
