// Resumable image upload from the browser: declare the version through the API, then
// send the bytes with tus (tus-js-client) to the API's /uploads. A stopped upload resumes
// from the server's offset when the same file is chosen again (the server remembers the
// upload, not the browser).
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form || !window.tus) return;
  const csrf = document.body.dataset.csrf || "";
  const chunkSize = parseInt(form.dataset.chunkSize, 10) || 32 * 1024 * 1024;
  const state = document.getElementById("upload-state");
  const bar = document.getElementById("upload-progress");
  const text = document.getElementById("upload-status");
  const HASH_LIMIT = 1024 * 1024 * 1024;

  function say(message) { state.hidden = false; text.textContent = message; }
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (_, key) => (key in values ? values[key] : ""));
  }

  async function sha256Hex(file) {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return Array.from(new Uint8Array(digest)).map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  function send(file, imageId, uploadUrl) {
    state.hidden = false;
    const upload = new tus.Upload(file, {
      endpoint: "/uploads",
      uploadUrl: uploadUrl || null,
      metadata: { image_id: String(imageId), filename: file.name },
      headers: { "X-CSRF-Token": csrf },
      chunkSize: chunkSize,
      retryDelays: [0, 1000, 3000, 5000],
      storeFingerprintForResuming: false,
      onProgress: (sent, total) => {
        bar.max = total;
        bar.value = sent;
        const pct = total ? Math.floor((100 * sent) / total) + " %" : "";
        say(fill(form.dataset.textSending, { pct: pct }));
      },
      onSuccess: () => {
        bar.value = bar.max;
        say(form.dataset.textDone);
        text.dataset.done = "true";
        setTimeout(() => location.reload(), 1500);
      },
      onError: (error) => {
        const why = (error && error.originalResponse && error.originalResponse.getBody()) || String(error);
        let detail = why;
        try { detail = JSON.parse(why).detail || why; } catch (e) { /* not JSON */ }
        say(fill(form.dataset.textFailed, { why: detail }));
        text.dataset.failed = "true";
      },
    });
    upload.start();
    return upload;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = form.elements.file.files[0];
    if (!file) return;
    let sha256 = form.elements.sha256.value.trim().toLowerCase();
    if (!sha256) {
      if (file.size > HASH_LIMIT) { say(form.dataset.textHashNeeded); return; }
      say(form.dataset.textHashing);
      sha256 = await sha256Hex(file);
    }
    const format = form.elements.format.value;
    const body = {
      name: form.elements.name.value.trim(),
      version: form.elements.version.value.trim(),
      os_family: form.elements.os_family.value,
      format: format,
      size: file.size,
      sha256: sha256,
      notes: form.elements.notes.value.trim() || null,
    };
    if (form.elements.client_code) body.client_code = form.elements.client_code.value;
    if (format === "raw+zstd") {
      body.raw_size = parseInt(form.elements.raw_size.value, 10) || null;
      body.raw_sha256 = form.elements.raw_sha256.value.trim().toLowerCase() || null;
    }
    say(form.dataset.textDeclaring);
    const response = await fetch("/images", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      say(fill(form.dataset.textFailed, { why: answer.detail || response.status }));
      text.dataset.failed = "true";
      return;
    }
    send(file, answer.id, null);
  });

  for (const input of document.querySelectorAll("input[data-resume]")) {
    input.addEventListener("change", () => {
      const file = input.files[0];
      if (!file) return;
      if (String(file.size) !== input.dataset.size) { say(form.dataset.textSize); return; }
      send(file, input.dataset.imageId, input.dataset.uploadUrl || null);
    });
  }
})();
