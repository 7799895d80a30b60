// /account/delete: with sign-in configured, a signed-in person can delete the account
// here (DELETE /v1/me). Without it the page is text only.
const config = JSON.parse(document.getElementById("ideasnap-config").textContent);
const button = document.getElementById("delete-here");
const status = document.getElementById("delete-status");

async function start() {
  if (!config.firebase) return;
  const { initializeApp } = await import("/assets/vendor/firebase-app.js");
  const auth = await import("/assets/vendor/firebase-auth.js");
  const app = initializeApp({ apiKey: config.firebase.apiKey, projectId: config.firebase.projectId, authDomain: config.firebase.authDomain });
  const session = auth.initializeAuth(app, { persistence: [auth.indexedDBLocalPersistence, auth.browserLocalPersistence] });
  if (config.firebase.emulator) auth.connectAuthEmulator(session, config.firebase.emulator, { disableWarnings: true });
  auth.onAuthStateChanged(session, (user) => {
    button.hidden = !user;
  });
  button.addEventListener("click", async () => {
    if (!window.confirm(button.textContent + "?")) return;
    const user = session.currentUser;
    if (!user) return;
    button.disabled = true;
    const response = await fetch("/v1/me", { method: "DELETE", headers: { Authorization: `Bearer ${await user.getIdToken()}` } });
    button.disabled = false;
    if (response.ok) {
      await auth.signOut(session);
      status.textContent = "✓";
    } else {
      const body = await response.json().catch(() => ({}));
      status.textContent = (body.error && body.error.message) || `HTTP ${response.status}`;
    }
  });
}
start();
