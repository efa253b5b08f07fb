// A little vanilla JavaScript for the admin pages; every page also works
// without it (the sync link opens a page with the password form).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // The connection form: the sections are editable only when the
  // connection is enabled; only the chosen OAuth provider's block shows.
  const enabled = document.getElementById("enabled");
  const sections = document.getElementById("sections");
  if (enabled && sections) {
    enabled.addEventListener("change", () => { sections.disabled = !enabled.checked; });
  }
  const radios = document.querySelectorAll('input[name="auth"]');
  const showAuth = () => {
    const chosen = document.querySelector('input[name="auth"]:checked');
    const v = chosen ? chosen.value : "password";
    document.querySelectorAll("fieldset.oauth").forEach((fs) => {
      fs.hidden = fs.dataset.auth !== v;
      fs.disabled = fs.dataset.auth !== v;
    });
    const note = document.getElementById("password-note");
    if (note) note.hidden = v !== "password";
  };
  radios.forEach((r) => r.addEventListener("change", showAuth));
  if (radios.length) showAuth();

  // The sync dialog: the password is asked for at that moment, in a
  // password input that is never filled in by the page or the browser.
  const dialog = document.getElementById("sync-dialog");
  if (dialog) {
    const pw = document.getElementById("sync-password");
    document.querySelectorAll("a.sync[data-name]").forEach((a) => {
      a.addEventListener("click", (ev) => {
        ev.preventDefault();
        const name = a.dataset.name;
        const base = "/connections/" + encodeURIComponent(name);
        document.getElementById("sync-dialog-name").textContent = name;
        const row = a.closest("tr");
        document.getElementById("sync-dialog-user").textContent = row ? row.children[1].textContent : "";
        const needs = a.dataset.needsPassword === "true";
        document.getElementById("sync-dialog-password").hidden = !needs;
        pw.disabled = !needs;
        pw.required = needs;
        pw.value = "";
        document.getElementById("sync-submit").formAction = base + "/sync";
        document.getElementById("test-submit").formAction = base + "/test";
        document.getElementById("sync-dialog-form").action = base + "/sync";
        dialog.showModal();
        if (needs) pw.focus();
      });
    });
    document.getElementById("sync-cancel").addEventListener("click", () => { pw.value = ""; dialog.close(); });
    dialog.addEventListener("close", () => { pw.value = ""; });
  }

  // The sync's progress: poll the status until it is finished, then show
  // the report (the page renders it).
  const run = document.getElementById("run");
  if (run && run.dataset.finished !== "true") {
    const progress = document.getElementById("run-progress");
    const count = document.getElementById("run-count");
    const poll = async () => {
      try {
        const res = await fetch(run.dataset.statusUrl, { headers: { Accept: "application/json" } });
        const st = await res.json();
        if (progress) { progress.max = st.total || 1; progress.value = st.done; }
        if (count) count.textContent = st.done + " / " + st.total;
        if (st.finished) { location.reload(); return; }
      } catch (e) { /* try again */ }
      setTimeout(poll, 300);
    };
    setTimeout(poll, 200);
  }
});
