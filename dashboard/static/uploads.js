// Live progress of running uploads: polls /api/uploads/{id} until each is complete (pages work without it).
(function () {
  "use strict";
  function update(box, up) {
    var set = function (field, value) {
      var el = box.querySelector('[data-field="' + field + '"]');
      if (el) { el.textContent = String(value); }
    };
    var bar = box.querySelector('[data-field="bar"]');
    if (bar) { bar.className = "pct-" + up.percent; }
    var meter = box.querySelector('[role="progressbar"]');
    if (meter) { meter.setAttribute("aria-valuenow", String(up.percent)); }
    set("state", up.complete ? "Complete" : "In progress");
    set("processed", up.processed);
    set("published", up.published === null ? "?" : up.published);
    set("applied", up.processor_outcomes.APPLIED || 0);
    set("skipped", up.processor_outcomes.SKIPPED || 0);
    set("rejected", up.outcomes.REJECTED || 0);
    box.setAttribute("data-complete", up.complete ? "true" : "false");
  }
  function poll(box) {
    var id = box.getAttribute("data-upload-id");
    fetch("/api/uploads/" + encodeURIComponent(id), { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (up) {
        if (up) { update(box, up); }
        if (!up || !up.complete) { window.setTimeout(function () { poll(box); }, 1000); }
      })
      .catch(function () { window.setTimeout(function () { poll(box); }, 3000); });
  }
  document.querySelectorAll('.upload-progress[data-complete="false"]').forEach(poll);
})();
