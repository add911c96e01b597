// Progressive enhancement for the batch progress page: poll the JSON status and update in place.
// Without JavaScript the page refreshes itself (a <noscript> meta refresh) instead.
(function () {
  "use strict";
  var box = document.getElementById("batch");
  if (!box) { return; }
  var url = box.getAttribute("data-status-url");
  function show(s) {
    document.getElementById("progress").value = s.percent;
    document.getElementById("progress").textContent = s.percent + "%";
    document.getElementById("percent").textContent = s.percent + "%";
    document.getElementById("status").textContent = s.status;
    document.getElementById("done").textContent = s.done;
    var parts = [];
    Object.keys(s.counts || {}).forEach(function (k) { parts.push(k + ": " + s.counts[k]); });
    document.getElementById("counts").textContent = parts.join(", ");
    if (s.status === "COMPLETED") { document.getElementById("download").hidden = false; }
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        show(s);
        if (s.status === "QUEUED" || s.status === "PROCESSING") { window.setTimeout(poll, 500); }
        // awaiting the RA, or outside the processing window: look again now and then
        else if (s.status === "PENDING" || s.status === "PAUSED") { window.setTimeout(poll, 10000); }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  poll();
})();
