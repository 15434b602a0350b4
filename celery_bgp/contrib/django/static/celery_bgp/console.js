/* celery-bgp console: live refresh of the parts of a page marked data-bgp-live="<url>".
 *
 * Every data-bgp-interval milliseconds (default 5000) each such element's URL is asked
 * with the header "X-BGP-Live: 1"; a 200 answer replaces the element's content, a 204
 * keeps it. Nothing is asked while the tab is hidden or while paused (the pause is
 * remembered per browser in localStorage). No framework, no build step. */
(function () {
  "use strict";
  var KEY = "celery_bgp.live.paused";
  var paused = false;
  try { paused = window.localStorage.getItem(KEY) === "1"; } catch (e) { /* private mode */ }

  function label(button) {
    button.textContent = paused ? "Resume live updates" : "Pause live updates";
    button.setAttribute("aria-pressed", paused ? "true" : "false");
    document.documentElement.classList.toggle("bgp-live-paused", paused);
  }

  function refresh(element) {
    if (paused || document.hidden || element.dataset.bgpBusy === "1") { return; }
    element.dataset.bgpBusy = "1";
    var url = element.getAttribute("data-bgp-live");
    fetch(url, {headers: {"X-BGP-Live": "1"}, credentials: "same-origin"})
      .then(function (response) {
        if (response.status === 200) {
          return response.text().then(function (html) {
            if (html !== element.dataset.bgpLast) {
              element.innerHTML = html;
              element.dataset.bgpLast = html;
              element.dispatchEvent(new CustomEvent("bgp:refreshed", {bubbles: true}));
            }
            element.classList.remove("bgp-live-error");
          });
        }
        if (response.status !== 204) { element.classList.add("bgp-live-error"); }
      })
      .catch(function () { element.classList.add("bgp-live-error"); })
      .finally(function () { element.dataset.bgpBusy = "0"; });
  }

  function start() {
    var live = document.querySelectorAll("[data-bgp-live]");
    var toggles = document.querySelectorAll("[data-bgp-live-toggle]");
    toggles.forEach(function (button) {
      if (!live.length) { return; }
      button.hidden = false;
      label(button);
      button.addEventListener("click", function () {
        paused = !paused;
        try { window.localStorage.setItem(KEY, paused ? "1" : "0"); } catch (e) { /* ignore */ }
        toggles.forEach(label);
        if (!paused) { live.forEach(refresh); }
      });
    });
    live.forEach(function (element) {
      var every = parseInt(element.getAttribute("data-bgp-interval") || "5000", 10);
      window.setInterval(function () { refresh(element); }, Math.max(every, 1000));
    });
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { live.forEach(refresh); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else { start(); }
}());
