// osb-gateway console: small progressive enhancements. Every page reads fully without this file.
// - The audit log's newest page puts new rows on top as they are recorded (polls every 3 s; keeps
//   at most 500 rows).
// - The marketplace's search hides services as you type (the form still searches on the server).
(function () {
  "use strict";

  function liveAudit() {
    var table = document.getElementById("audit");
    if (!table || !table.dataset.live) { return; }
    var body = table.tBodies[0];
    var status = document.getElementById("live-status");
    var base = table.dataset.live;
    var newest = Number(table.dataset.newest || "0");
    var added = 0;
    function poll() {
      var url = base + (base.endsWith("?") ? "" : "&") + "after=" + newest;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (!r.ok) { return ""; }
          // Where the next ask starts: the last record these rows cover.
          var seen = Number(r.headers.get("X-OSB-Gateway-Seen") || "0");
          if (seen > newest) { newest = seen; }
          return r.text();
        })
        .then(function (html) {
          if (!html.trim()) { return; }
          // Rows rendered (and escaped) by the server.
          body.insertAdjacentHTML("afterbegin", html);
          var rows = body.querySelectorAll("tr[data-seq]");
          for (var i = 500; i < rows.length; i++) { rows[i].remove(); }
          added = Math.min(rows.length, 500);
          if (status) { status.textContent = "Newest first; live: " + added + " rows shown."; }
        })
        .catch(function () { /* next poll */ })
        .finally(function () { setTimeout(poll, 3000); });
    }
    if (status) { status.textContent = "Newest first; new records appear on top."; }
    setTimeout(poll, 3000);
  }

  function searchAsYouType() {
    var input = document.querySelector("input[data-filter]");
    if (!input) { return; }
    var list = document.getElementById(input.dataset.filter);
    if (!list) { return; }
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      list.querySelectorAll("[data-search]").forEach(function (el) {
        el.hidden = q !== "" && el.dataset.search.indexOf(q) === -1;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    liveAudit();
    searchAsYouType();
  });
})();
