// Follows a report PDF that a worker is printing: polls the JSON status endpoint and
// offers (and starts) the download when the file is ready, or says why it failed.
(function () {
  "use strict";
  var box = document.getElementById("pdf-status");
  if (!box || box.getAttribute("data-state") === "failed") return;
  var message = document.getElementById("pdf-message");
  var link = document.getElementById("pdf-link");
  var delay = 1000;
  function show(text, cls) {
    message.textContent = text;
    message.className = cls || "";
  }
  function poll() {
    fetch(box.getAttribute("data-status-url"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        box.setAttribute("data-state", s.state);
        if (s.state === "ready") {
          show("The PDF is ready.");
          link.hidden = false;
          window.location.href = s.download_url;
        } else if (s.state === "failed") {
          show("The PDF could not be made: " + s.detail, "error");
          link.querySelector("a").textContent = "Try again";
          link.querySelector("a").href = s.download_url + "&retry=1";
          link.querySelector("a").removeAttribute("download");
          link.hidden = false;
        } else if (s.state === "missing") {
          show("The PDF is not being rendered any more (the ranking may have changed).", "error");
          link.querySelector("a").textContent = "Start again";
          link.querySelector("a").removeAttribute("download");
          link.hidden = false;
        } else {
          delay = Math.min(delay * 1.5, 5000);
          setTimeout(poll, delay);
        }
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, delay);
})();
