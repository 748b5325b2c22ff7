// jobworker dashboard: live update of [data-live] regions (the overview), by polling a fragment URL.
// The server caches one snapshot for every open tab, so each poll is a cheap read of that cache.
"use strict";
(function () {
  const base = document.body.dataset.base || "";
  const every = Math.max(1, Number(document.body.dataset.refresh || "2")) * 1000;
  for (const region of document.querySelectorAll("[data-live]")) {
    const url = base + region.dataset.live;
    let busy = false;
    setInterval(async function () {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const response = await fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" });
        if (response.ok) {
          region.innerHTML = await response.text();
          region.dataset.updated = String(Date.now());
        }
      } catch (e) {
        // The next poll retries; a dashboard that cannot reach its server keeps showing the last data.
      } finally {
        busy = false;
      }
    }, every);
  }
  // Bulk selection: "select all" toggles every job checkbox of its form.
  for (const all of document.querySelectorAll("input[data-select-all]")) {
    all.addEventListener("change", function () {
      for (const box of all.form.querySelectorAll("input[name=job_id]")) box.checked = all.checked;
    });
  }
})();
