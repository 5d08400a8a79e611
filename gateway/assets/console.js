// osb-gateway console: small progressive enhancements. Every page reads fully without this file.
// - The audit log's newest page puts new rows on top as they are recorded (polls every 3 s).
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
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (html) {
          if (!html.trim()) { return; }
          // Rows rendered (and escaped) by the server.
          body.insertAdjacentHTML("afterbegin", html);
          var first = body.querySelector("tr[data-seq]");
          if (first) { newest = Math.max(newest, Number(first.dataset.seq)); }
          added = body.querySelectorAll("tr[data-seq]").length;
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
