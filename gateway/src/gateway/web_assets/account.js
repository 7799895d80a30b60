// Signed in (Firebase Auth, the emulator locally): history, drafts that save themselves
// with If-Match, their versions, the account page with deletion, and sign out. Loaded
// only when the gateway is configured for sign-in.
import { request } from "./api.js";
import { ApiFailure, explain } from "./messages.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["snap-view", "sign-in-view", "history-view", "draft-view", "account-view"];
const SAVE_DELAY_MS = 800;
let session = null;
let authApi = null;
let historyPageToken = null;
let draft = null;
let saveTimer = null;

export function show(view) {
  for (const id of VIEWS) $(id).hidden = id !== view;
  const heading = $(view).querySelector("h1");
  heading.tabIndex = -1;
  heading.focus();
}

export async function authHeaders() {
  const user = session && session.currentUser;
  return user ? { Authorization: `Bearer ${await user.getIdToken()}` } : {};
}

async function call(path, options = {}) {
  return request(path, { ...options, headers: { ...(options.headers || {}), ...(await authHeaders()) } });
}

function say(id, failure, config) {
  $(id).textContent = failure instanceof ApiFailure ? explain(failure, config) : String(failure);
}

export async function startAccount(config, onIdea) {
  const { initializeApp } = await import("/assets/vendor/firebase-app.js");
  authApi = await import("/assets/vendor/firebase-auth.js");
  const app = initializeApp({ apiKey: config.firebase.apiKey, projectId: config.firebase.projectId, authDomain: config.firebase.authDomain });
  session = authApi.initializeAuth(app, { persistence: [authApi.indexedDBLocalPersistence, authApi.browserLocalPersistence] });
  if (config.firebase.emulator) authApi.connectAuthEmulator(session, config.firebase.emulator, { disableWarnings: true });

  authApi.onAuthStateChanged(session, (user) => {
    $("show-sign-in").hidden = Boolean(user);
    for (const id of ["show-history", "show-account", "sign-out"]) $(id).hidden = !user;
  });
  $("show-sign-in").addEventListener("click", () => show("sign-in-view"));
  $("sign-out").addEventListener("click", async () => {
    await authApi.signOut(session);
    show("snap-view");
  });
  const credentials = () => [$("email").value, $("password").value];
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await authApi.signInWithEmailAndPassword(session, ...credentials());
      show("snap-view");
    } catch (error) {
      $("status").textContent = `Sign-in failed: ${error.code || error}`;
    }
  });
  $("sign-up-button").addEventListener("click", async () => {
    try {
      await authApi.createUserWithEmailAndPassword(session, ...credentials());
      show("snap-view");
    } catch (error) {
      $("status").textContent = `Could not create the account: ${error.code || error}`;
    }
  });
  $("show-history").addEventListener("click", () => openHistory(config, onIdea, true));
  $("history-more").addEventListener("click", () => openHistory(config, onIdea, false));
  $("show-account").addEventListener("click", () => openAccount(config));
  $("delete-account").addEventListener("click", () => deleteAccount(config));
  $("draft-back").addEventListener("click", () => show("snap-view"));
  for (const id of ["draft-title", "draft-body", "draft-hashtags"]) {
    $(id).addEventListener("input", () => scheduleSave(config));
  }
  $("conflict-theirs").addEventListener("click", () => {
    if (draft.theirs) fillDraft(draft.theirs);
    $("draft-conflict").hidden = true;
  });
  $("conflict-mine").addEventListener("click", () => {
    if (draft.theirs) draft.etag = draft.theirs.etag;
    $("draft-conflict").hidden = true;
    save(config);
  });
  return { signedIn: () => Boolean(session.currentUser) };
}

async function openHistory(config, onIdea, fresh) {
  if (fresh) {
    historyPageToken = null;
    $("history").replaceChildren();
    show("history-view");
  }
  try {
    const query = historyPageToken ? `?page_token=${encodeURIComponent(historyPageToken)}` : "";
    const page = await (await call(`/v1/snaps${query}`)).json();
    for (const snap of page.snaps) {
      const item = document.createElement("li");
      if (snap.upload && snap.upload.id) {
        const image = document.createElement("img");
        image.alt = "";
        item.append(image);
        showThumbnail(image, snap.upload.id);
      }
      const title = document.createElement("p");
      const ideas = snap.ideas || [];
      title.textContent = ideas.length ? ideas[0].title : snap.id;
      item.append(title);
      for (const idea of ideas) {
        const edit = document.createElement("button");
        edit.type = "button";
        edit.textContent = `Edit “${idea.title}”`;
        edit.addEventListener("click", () => openDraft(config, idea, snap));
        item.append(edit);
      }
      $("history").append(item);
    }
    historyPageToken = page.next_page_token || null;
    $("history-more").hidden = !historyPageToken;
    $("history-empty").hidden = $("history").children.length > 0;
  } catch (failure) {
    say("status", failure, config);
  }
}

// A signed-in person's photos are private: the thumbnail is fetched with their token.
export async function showThumbnail(image, uploadId) {
  try {
    const blob = await (await call(`/v1/uploads/${encodeURIComponent(uploadId)}/thumbnail`)).blob();
    image.src = URL.createObjectURL(blob);
  } catch {
    image.removeAttribute("src");
  }
}

// A draft is a title and a body; the hashtags are kept as the body's last line.
const HASHTAG_LINE = /\n\n((?:#\S+\s*)+)$/;

function withHashtags(body, hashtags) {
  const tags = hashtags.filter(Boolean).join(" ");
  return tags ? `${body}\n\n${tags}` : body;
}

function fillDraft(found) {
  draft.etag = found.etag;
  const text = found.body || "";
  const tags = text.match(HASHTAG_LINE);
  $("draft-title").value = found.title || "";
  $("draft-body").value = tags ? text.slice(0, tags.index) : text;
  $("draft-hashtags").value = tags ? tags[1].trim() : "";
}

function draftBody() {
  return {
    title: $("draft-title").value,
    body: withHashtags($("draft-body").value, $("draft-hashtags").value.split(/\s+/)),
  };
}

export async function openDraft(config, idea, snap = null) {
  draft = { id: crypto.randomUUID(), etag: null, theirs: null };
  $("revisions").dataset.draft = draft.id;
  show("draft-view");
  $("draft-conflict").hidden = true;
  try {
    const response = await call(`/v1/drafts/${draft.id}`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        title: idea.title || "",
        body: withHashtags(idea.body || "", idea.hashtags || []),
        snap_id: snap ? snap.id : null,
      }),
    });
    fillDraft({ ...(await response.json()), etag: response.headers.get("ETag") });
    $("draft-status").textContent = "Saved.";
    await loadRevisions(config);
  } catch (failure) {
    say("draft-status", failure, config);
  }
}

function scheduleSave(config) {
  clearTimeout(saveTimer);
  $("draft-status").textContent = "Editing…";
  saveTimer = setTimeout(() => save(config), SAVE_DELAY_MS);
}

async function save(config) {
  if (!draft || !draft.etag) return;
  try {
    const response = await call(`/v1/drafts/${draft.id}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json", "If-Match": draft.etag },
      body: JSON.stringify(draftBody()),
    });
    const saved = await response.json();
    draft.etag = response.headers.get("ETag") || saved.etag;
    $("draft-status").textContent = "Saved.";
    await loadRevisions(config);
  } catch (failure) {
    if (failure instanceof ApiFailure && failure.status === 412) {
      // The draft as it is now, from the other device: error.details.current.
      const current = (failure.details && failure.details.current) || null;
      draft.theirs = current;
      $("draft-conflict").hidden = false;
      $("draft-status").textContent = "Not saved: changed on another device.";
    } else {
      say("draft-status", failure, config);
    }
  }
}

async function loadRevisions(config) {
  const list = $("revisions");
  try {
    const answer = await (await call(`/v1/drafts/${draft.id}/revisions`)).json();
    list.replaceChildren(
      ...answer.revisions.map((revision) => {
        const item = document.createElement("li");
        const when = revision.created_at ? new Date(revision.created_at).toLocaleString() : "";
        item.textContent = `Version ${revision.rev} ${when} `;
        const restore = document.createElement("button");
        restore.type = "button";
        restore.textContent = `Restore version ${revision.rev}`;
        restore.addEventListener("click", async () => {
          try {
            const response = await call(`/v1/drafts/${draft.id}/revisions/${revision.rev}:restore`, {
              method: "POST",
              headers: { "If-Match": draft.etag },
            });
            fillDraft({ ...(await response.json()), etag: response.headers.get("ETag") });
            $("draft-status").textContent = `Restored version ${revision.rev}.`;
            await loadRevisions(config);
          } catch (failure) {
            say("draft-status", failure, config);
          }
        });
        item.append(restore);
        return item;
      }),
    );
  } catch (failure) {
    say("draft-status", failure, config);
  }
}

async function openAccount(config) {
  show("account-view");
  const facts = $("account-facts");
  try {
    const me = await (await call("/v1/me")).json();
    const rows = [
      ["Email", session.currentUser.email || ""],
      ["Tier", me.tier],
      ["Used today", me.usage ? JSON.stringify(me.usage) : ""],
      ["Limits", me.limits ? JSON.stringify(me.limits) : ""],
    ];
    facts.replaceChildren(
      ...rows.flatMap(([name, value]) => {
        const term = document.createElement("dt");
        term.textContent = name;
        const detail = document.createElement("dd");
        detail.textContent = value;
        return [term, detail];
      }),
    );
  } catch (failure) {
    say("status", failure, config);
  }
}

async function deleteAccount(config) {
  if (!window.confirm("Delete your account, history, drafts and photos? This cannot be undone.")) return;
  try {
    await call("/v1/me", { method: "DELETE" });
    await authApi.signOut(session);
    show("snap-view");
    $("status").textContent = "Your account and everything it kept were deleted.";
  } catch (failure) {
    say("status", failure, config);
  }
}
