// Kato console: the live parts of server-rendered pages. Every page works without this script;
// it adds validation as you type, live logs and acks (server-sent events), the log viewer's
// controls, copy buttons, and what a change will do before it is saved.
"use strict";
(function () {
  const csrf = () => (document.querySelector("main[data-csrf]") || {}).dataset?.csrf || "";

  // The admin's team switcher goes where it points.
  document.querySelectorAll("select[data-navigate]").forEach((s) =>
    s.addEventListener("change", () => { if (s.value) location.assign(s.value); }));

  // Validation as the user types: the form is posted to its data-validate URL, which answers
  // {"errors": {"field": "message"}}; each message goes next to the input of that name.
  function showErrors(form, errors) {
    const placed = new Set();
    form.querySelectorAll("[data-error-for]").forEach((slot) => {
      const name = slot.dataset.errorFor;
      const msg = errors[name] || "";
      slot.textContent = msg;
      if (msg) placed.add(name);
      const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
      if (input) {
        if (msg) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
      }
    });
    const general = form.querySelector('[data-error-for="_form"]');
    if (general) {
      const rest = Object.entries(errors).filter(([k]) => !placed.has(k)).map(([k, v]) => (k === "_form" ? v : `${k}: ${v}`));
      general.textContent = rest.join(" ");
    }
  }
  document.querySelectorAll("form[data-validate]").forEach((form) => {
    let timer = null, seq = 0;
    const check = () => {
      const mine = ++seq;
      fetch(form.dataset.validate, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "x-kato-csrf": csrf() },
        body: new URLSearchParams(new FormData(form)),
      }).then((r) => (r.ok ? r.json() : null)).then((answer) => {
        if (answer && mine === seq) showErrors(form, answer.errors || {});
      }).catch(() => {});
    };
    const later = () => { clearTimeout(timer); timer = setTimeout(check, 250); };
    form.addEventListener("input", later);
    form.addEventListener("change", later);
  });

  // What saving will do: inputs say data-effect="live" (served by discovery) or "restart"
  // (the pod is rendered anew); the form's [data-effect-notice] tells which applies.
  function changed(el) {
    if (el.type === "checkbox" || el.type === "radio") return el.checked !== el.defaultChecked;
    if (el.tagName === "SELECT") return Array.from(el.options).some((o) => o.selected !== o.defaultSelected);
    return el.value !== el.defaultValue;
  }
  document.querySelectorAll("form [data-effect-notice]").forEach((notice) => {
    const form = notice.closest("form");
    const update = () => {
      const effects = Array.from(form.querySelectorAll("[data-effect]")).filter(changed).map((el) => el.dataset.effect);
      notice.classList.toggle("restart", effects.includes("restart"));
      notice.textContent = effects.includes("restart")
        ? "Saving restarts the pod: the change is rendered into the pod spec."
        : effects.includes("live")
          ? "Saving applies live (discovery): running plug-ins get the new values without a restart."
          : notice.dataset.idle || "Nothing changed yet.";
    };
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();
  });

  // Copy buttons: data-copy names the element whose text is copied.
  document.querySelectorAll("[data-copy]").forEach((b) => b.addEventListener("click", () => {
    const src = document.querySelector(b.dataset.copy);
    if (!src || !navigator.clipboard) return;
    navigator.clipboard.writeText(src.textContent).then(() => {
      const status = b.parentElement.querySelector("[data-copied]");
      if (status) status.textContent = "Copied.";
    });
  }));

  // Live logs: a [data-log] viewer follows its data-sse URL. Events: "line" (one line; its id is
  // the line's number, so a reconnect resumes after it), "end" (the stream's last word).
  document.querySelectorAll("[data-log]").forEach((viewer) => {
    const out = viewer.querySelector("[data-lines]");
    const status = viewer.querySelector("[data-status]");
    const search = viewer.querySelector("input[type=search]");
    const pause = viewer.querySelector("[data-pause]");
    let paused = false, held = [], needle = "";
    // Lines the page came with (a log as stored so far) are part of the download too.
    const all = Array.from(out.querySelectorAll(":scope > div"), (row) => row.textContent);
    const show = (row) => { row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle); };
    const append = (text) => {
      const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 8;
      const row = document.createElement("div");
      row.textContent = text;
      show(row);
      out.appendChild(row);
      if (atEnd) out.scrollTop = out.scrollHeight;
    };
    const add = (text) => { all.push(text); if (paused) held.push(text); else append(text); };
    if (pause) pause.addEventListener("click", () => {
      paused = !paused;
      pause.textContent = paused ? "Resume" : "Pause";
      pause.setAttribute("aria-pressed", String(paused));
      if (!paused) { held.forEach(append); held = []; }
    });
    if (search) search.addEventListener("input", () => {
      needle = search.value.toLowerCase();
      out.querySelectorAll(":scope > div").forEach(show);
      const shown = out.querySelectorAll(":scope > div:not([hidden])").length;
      const count = viewer.querySelector("[data-matches]");
      if (count) count.textContent = needle ? `${shown} matching line${shown === 1 ? "" : "s"}` : "";
    });
    const download = viewer.querySelector("[data-download]");
    if (download) download.addEventListener("click", () => {
      const blob = new Blob([all.join("\n") + "\n"], { type: "text/plain" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = viewer.dataset.filename || "log.txt";
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    });
    if (!viewer.dataset.sse) return;
    const source = new EventSource(viewer.dataset.sse);
    if (status) status.textContent = "Following…";
    source.addEventListener("line", (e) => add(e.data));
    source.addEventListener("end", (e) => {
      source.close();
      if (status) status.textContent = e.data;
      viewer.dataset.ended = "true";
      const finish = document.querySelector(viewer.dataset.onEnd || "#none");
      if (finish) finish.hidden = false;
    });
  });

  // Live fragments: a [data-live] element is replaced by each "html" event of its URL.
  document.querySelectorAll("[data-live]").forEach((box) => {
    const source = new EventSource(box.dataset.live);
    source.addEventListener("html", (e) => { box.innerHTML = e.data; });
    source.addEventListener("end", () => source.close());
  });

  // Refreshed figures: a [data-refresh="S"] box takes the same box of this page fetched again
  // every S seconds, while the tab is visible.
  document.querySelectorAll("[data-refresh]").forEach((box) => {
    const every = (Number(box.dataset.refresh) || 5) * 1000;
    const status = document.querySelector("[data-refresh-status]");
    const say = (t) => { if (status) status.textContent = t; };
    say("Updated every " + every / 1000 + " s.");
    const tick = async () => {
      if (!document.hidden) {
        try {
          const res = await fetch(location.href, { headers: { accept: "text/html" } });
          const fresh = res.ok && new DOMParser().parseFromString(await res.text(), "text/html").getElementById(box.id);
          if (fresh) { box.innerHTML = fresh.innerHTML; say("Updated every " + every / 1000 + " s; last at " + new Date().toLocaleTimeString() + "."); }
        } catch (e) { say("Not updated: " + e.message); }
      }
      setTimeout(tick, every);
    };
    setTimeout(tick, every);
  });
})();
