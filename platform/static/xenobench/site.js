// Light progressive enhancement; every page works without it.
// - table.sortable: header buttons sort rows (keyboard: Tab + Enter/Space), aria-sort kept.
// - input[data-filter-table]: filters the table's rows as you type (the form still works).
// - [data-tabs]: ARIA tabs (arrow keys, Home/End); without JS all panels show as sections.
// - select[data-autosubmit]: submits its form when the choice changes.
// - #live-status: polls a submission's status until it is final.
(function () {
  "use strict";
  function cellValue(td, numeric) {
    var v = td.getAttribute("data-value");
    if (v === null) v = td.textContent.trim();
    if (!numeric) return v.toLowerCase();
    var f = parseFloat(v);
    return isNaN(f) ? null : f;
  }
  function sortBy(table, th, idx, asc) {
    var numeric = th.getAttribute("data-type") === "num";
    table.querySelectorAll("thead th").forEach(function (o) { o.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a.cells[idx], numeric), y = cellValue(b.cells[idx], numeric);
      if (x === null || x === "") return (y === null || y === "") ? 0 : 1; // missing always last
      if (y === null || y === "") return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    var status = document.getElementById("sort-status");
    if (status) status.textContent = "Sorted by " + th.textContent.trim() + (asc ? ", ascending" : ", descending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, idx) {
      var label = th.textContent.trim();
      if (!label) return;
      var btn = document.createElement("button");
      btn.type = "button"; btn.className = "sort"; btn.textContent = label;
      btn.title = "Sort by " + label;
      th.textContent = ""; th.appendChild(btn); th.setAttribute("aria-sort", "none");
      btn.addEventListener("click", function () {
        sortBy(table, th, idx, th.getAttribute("aria-sort") !== "ascending");
      });
    });
  });
  if (document.querySelector("table.sortable") && !document.getElementById("sort-status")) {
    var s = document.createElement("p");
    s.id = "sort-status"; s.className = "sr-only"; s.setAttribute("aria-live", "polite");
    document.body.appendChild(s);
  }

  document.querySelectorAll("input[data-filter-table]").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-filter-table"));
    var count = document.getElementById("filter-count");
    if (!table) return;
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase(), shown = 0, rows = table.tBodies[0].rows;
      for (var i = 0; i < rows.length; i++) {
        var hit = !q || (rows[i].getAttribute("data-filter") || rows[i].textContent.toLowerCase()).indexOf(q) !== -1;
        rows[i].hidden = !hit; if (hit) shown++;
      }
      if (count) count.textContent = shown + " of " + rows.length + " shown";
    });
  });

  document.querySelectorAll("[data-tabs]").forEach(function (box) {
    var tabs = Array.prototype.slice.call(box.querySelectorAll("[role=tab]"));
    if (!tabs.length) return;
    box.classList.add("js-tabs");
    function select(tab, focus) {
      tabs.forEach(function (t) {
        var on = t === tab;
        t.setAttribute("aria-selected", on ? "true" : "false");
        t.tabIndex = on ? 0 : -1;
        document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
      });
      if (focus) tab.focus();
    }
    tabs.forEach(function (t, i) {
      t.addEventListener("click", function () { select(t, false); });
      t.addEventListener("keydown", function (e) {
        var j = null;
        if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
        else if (e.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
        else if (e.key === "Home") j = 0;
        else if (e.key === "End") j = tabs.length - 1;
        if (j !== null) { e.preventDefault(); select(tabs[j], true); }
      });
    });
    select(tabs[0], false);
  });

  // select[data-autosubmit]: submits its form on change (no inline handlers: CSP).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (sel) {
    sel.addEventListener("change", function () { sel.form.submit(); });
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
        var total = Math.max(0, d.progress_total | 0);
        var done = Math.min(Math.max(0, d.progress_done | 0), total); // never outside 0..total
        bar.max = Math.max(1, total); bar.value = done;
        document.getElementById("progress-text").textContent = done + " / " + total + " cases";
        var log = document.getElementById("log");
        if (log && d.log !== undefined) log.textContent = d.log;
        if (d.final) { live.setAttribute("data-final", "1"); setTimeout(function () { location.reload(); }, 300); }
        else setTimeout(tick, 1000);
      }).catch(function () { setTimeout(tick, 3000); });
    };
    if (live.getAttribute("data-final") !== "1") setTimeout(tick, 500);
  }
})();
