// Light progressive enhancement: sortable tables and live submission progress.
(function () {
  "use strict";
  function cellValue(td, numeric) {
    var v = td.getAttribute("data-value");
    if (v === null) v = td.textContent.trim();
    if (!numeric) return v.toLowerCase();
    var f = parseFloat(v);
    return isNaN(f) ? Infinity : f;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, idx) {
      var btn = document.createElement("button");
      btn.type = "button"; btn.className = "sort"; btn.textContent = th.textContent;
      btn.setAttribute("aria-label", "Sort by " + th.textContent);
      th.textContent = ""; th.appendChild(btn); th.setAttribute("aria-sort", "none");
      btn.addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") === "num";
        var asc = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("thead th").forEach(function (o) { o.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a.cells[idx], numeric), y = cellValue(b.cells[idx], numeric);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var live = document.getElementById("live-status");
  if (live) {
    var url = live.getAttribute("data-url");
    var tick = function () {
      fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (d) {
        document.getElementById("status-text").textContent = d.status_display;
        document.getElementById("status-text").className = "status-" + d.status;
        document.getElementById("status-reason").textContent = d.reason || "";
        var bar = document.getElementById("progress");
        bar.max = Math.max(1, d.progress_total); bar.value = d.progress_done;
        document.getElementById("progress-text").textContent = d.progress_done + " / " + d.progress_total + " cases";
        var log = document.getElementById("log");
        if (log && d.log !== undefined) log.textContent = d.log;
        if (d.final) { live.setAttribute("data-final", "1"); setTimeout(function () { location.reload(); }, 300); }
        else setTimeout(tick, 1500);
      }).catch(function () { setTimeout(tick, 4000); });
    };
    if (live.getAttribute("data-final") !== "1") setTimeout(tick, 1000);
  }
})();
