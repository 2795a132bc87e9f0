// Masterline console: confirmations, live updates (Server-Sent Events), keyboard use of
// the bench board. No build step; htmx does the rest.
(function () {
  "use strict";

  const csrf = () => document.body.dataset.csrf || "";

  // Messages: closable; confirmations fade after a while, errors stay.
  function showMessage(html) {
    const box = document.getElementById("messages");
    if (!box) return;
    box.insertAdjacentHTML("afterbegin", html);
    const first = box.firstElementChild;
    if (first && first.classList.contains("ok")) {
      setTimeout(() => first.remove(), 10000);
    }
  }
  document.addEventListener("click", (e) => {
    const close = e.target.closest(".message .close");
    if (close) close.parentElement.remove();
  });

  // Actions that need a confirmation: <button data-post="url" data-confirm="…">.
  // The dialog is modal: focus stays in it, Enter confirms, Escape cancels.
  const dialog = document.getElementById("confirm");
  let pendingTiles = [];

  async function post(url, reason) {
    const body = new URLSearchParams();
    if (reason) body.set("reason", reason);
    const response = await fetch(url, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf(), "HX-Request": "true" },
      body: body,
      credentials: "same-origin",
    });
    const redirect = response.headers.get("HX-Redirect");
    if (redirect) { location.href = redirect; return; }
    showMessage(await response.text());
  }

  function confirmThen(button) {
    const title = document.getElementById("confirm-title");
    const detail = document.getElementById("confirm-detail");
    const reasonLabel = document.getElementById("confirm-reason-label");
    const reason = document.getElementById("confirm-reason");
    title.textContent = button.dataset.confirm;
    detail.textContent = button.dataset.confirmDetail || "";
    const wantsReason = button.hasAttribute("data-reason");
    reasonLabel.hidden = !wantsReason;
    reason.value = "";
    dialog.returnValue = "";
    const tile = button.closest(".tile");
    const returnTo = tile ? tile.id : null;
    dialog.addEventListener("close", function onClose() {
      const ok = dialog.returnValue === "ok";
      const why = reason.value;
      flushTiles();
      const again = returnTo && document.getElementById(returnTo);
      if (again) again.focus(); else button.focus();
      if (ok) post(button.dataset.post, wantsReason ? why : "");
    }, { once: true });
    dialog.showModal();
    (wantsReason ? reason : document.getElementById("confirm-ok")).focus();
  }
  if (dialog) {
    dialog.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && e.target.id === "confirm-reason") {
        e.preventDefault();
        dialog.close("ok");
      }
    });
  }
  document.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-post]");
    if (!button) return;
    e.preventDefault();
    if (button.hasAttribute("data-confirm")) confirmThen(button);
    else post(button.dataset.post, "");
  });

  // The scan field is ready for the next beep as soon as one is answered.
  document.addEventListener("htmx:afterRequest", (e) => {
    const form = e.detail.elt;
    if (form && form.classList && form.classList.contains("scan")) {
      form.reset();
      const field = form.querySelector("input[name=code]");
      if (field) field.focus();
    }
  });

  // Live updates. The server sends HTML of what changed; each element replaces the one
  // with its id. Focus stays where it was.
  function swapTiles(html) {
    if (dialog && dialog.open) { pendingTiles.push(html); return; }
    const template = document.createElement("template");
    template.innerHTML = html;
    const active = document.activeElement;
    const activeTile = active && active.closest ? active.closest("[id]") : null;
    const focusId = activeTile ? activeTile.id : null;
    const focusKey = active && active.dataset ? active.dataset.key : null;
    for (const element of Array.from(template.content.children)) {
      const old = element.id && document.getElementById(element.id);
      if (!old) continue;
      old.replaceWith(element);
      if (window.htmx) window.htmx.process(element);
      if (focusId === element.id) {
        const target = (focusKey && element.querySelector('[data-key="' + focusKey + '"]')) || element;
        target.focus({ preventScroll: true });
      }
    }
  }
  function flushTiles() {
    const queued = pendingTiles;
    pendingTiles = [];
    for (const html of queued) swapTiles(html);
  }

  const status = document.getElementById("live-status");
  if (status && status.dataset.liveUrl && window.EventSource) {
    const source = new EventSource(status.dataset.liveUrl);
    source.onopen = () => {
      status.textContent = status.dataset.textLive;
      status.className = "live-status ok";
    };
    source.onerror = () => {
      status.textContent = status.dataset.textLost;
      status.className = "live-status lost";
    };
    source.addEventListener("tiles", (e) => swapTiles(e.data));
    // Figures reload when the wave changes, but not under a person's hands: while the
    // focus is in them (a committed date being typed), the reload waits for it to leave.
    source.addEventListener("stale", () => {
      for (const el of document.querySelectorAll("[data-refresh]")) {
        if (el.contains(document.activeElement)) { el.dataset.pending = "1"; continue; }
        if (window.htmx) window.htmx.trigger(el, "refresh");
      }
    });
    document.addEventListener("focusout", (e) => {
      const el = e.target.closest && e.target.closest("[data-refresh]");
      if (!el || !el.dataset.pending || el.contains(e.relatedTarget)) return;
      delete el.dataset.pending;
      if (window.htmx) window.htmx.trigger(el, "refresh");
    });
    source.addEventListener("signed-out", () => {
      source.close();
      location.href = "/console/sign-in?next=" + encodeURIComponent(location.pathname + location.search);
    });
  }

  // The bench board with a keyboard: arrows between slots, R/A/Q on the focused slot,
  // Enter opens its laptop.
  const board = document.getElementById("board");
  function columns(tiles) {
    const top = tiles[0].offsetTop;
    let n = 0;
    for (const t of tiles) { if (t.offsetTop !== top) break; n += 1; }
    return Math.max(1, n);
  }
  if (board) {
    board.addEventListener("keydown", (e) => {
      const tile = e.target.closest(".tile");
      if (!tile || e.ctrlKey || e.metaKey || e.altKey) return;
      const tiles = Array.from(board.querySelectorAll(".tile"));
      const i = tiles.indexOf(tile);
      let j = null;
      switch (e.key) {
        case "ArrowRight": j = i + 1; break;
        case "ArrowLeft": j = i - 1; break;
        case "ArrowDown": j = i + columns(tiles); break;
        case "ArrowUp": j = i - columns(tiles); break;
        case "Home": j = 0; break;
        case "End": j = tiles.length - 1; break;
        case "Enter":
          if (e.target === tile && tile.dataset.href) { e.preventDefault(); location.href = tile.dataset.href; }
          return;
        default: {
          const button = tile.querySelector('[data-key="' + e.key.toLowerCase() + '"]');
          if (button) { e.preventDefault(); button.click(); }
          return;
        }
      }
      if (j !== null && j >= 0 && j < tiles.length) { e.preventDefault(); tiles[j].focus(); }
    });
  }
})();
