/* celery-bgp console: live refresh of the parts of a page marked data-bgp-live="<url>".
 *
 * Every data-bgp-interval milliseconds (default 5000) each such element's URL is asked
 * with the header "X-BGP-Live: 1"; a 200 answer replaces the element's content, a 204
 * keeps it. Nothing is asked while the tab is hidden or while paused (the pause is
 * remembered per browser in localStorage). No framework, no build step.
 *
 * A view may also answer with:
 * - the header "X-BGP-Live-Url": the URL to ask next time (what the page now shows, so
 *   the next ask can be a cheap "changed since?" probe);
 * - the header "X-BGP-Live-Parts: 1": the body is <template data-bgp-part="ID"> elements,
 *   each replacing the content of the element with that id inside the live element, or
 *   appended to it with data-bgp-append (new log lines), so one ask refreshes several parts;
 *   a target with data-bgp-keep="N" then keeps only its newest N rows.
 * An element with data-bgp-hold="<selector>" is not refreshed while the selector finds
 * something in it (e.g. a checked checkbox that a refresh would lose). */
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

  function held(element) {
    var hold = element.getAttribute("data-bgp-hold");
    return Boolean(hold && element.querySelector(hold));
  }

  // An appended-to element with data-bgp-keep="N" keeps its newest N rows (a page left
  // open on a chatty job must not grow without end); data-bgp-cut names the note to show.
  function keepNewest(target) {
    var keep = parseInt(target.getAttribute("data-bgp-keep") || "0", 10);
    if (!keep) { return; }
    var rows = target.querySelectorAll(":scope > tr:not(.bgp-no-logs)");
    for (var i = 0; i < rows.length - keep; i += 1) { rows[i].remove(); }
    var cut = target.getAttribute("data-bgp-cut");
    if (rows.length > keep && cut && document.getElementById(cut)) {
      document.getElementById(cut).hidden = false;
    }
  }

  function applyParts(element, html) {
    var holder = document.createElement("template");
    holder.innerHTML = html;
    holder.content.querySelectorAll("template[data-bgp-part]").forEach(function (part) {
      var target = element.querySelector("#" + part.getAttribute("data-bgp-part"));
      if (!target) { return; }
      if (part.hasAttribute("data-bgp-append")) {
        target.insertAdjacentHTML("beforeend", part.innerHTML);
        keepNewest(target);
      } else {
        target.innerHTML = part.innerHTML;
      }
    });
    element.dispatchEvent(new CustomEvent("bgp:refreshed", {bubbles: true,
                                                         detail: {parts: true}}));
  }

  function refresh(element) {
    if (paused || document.hidden || element.dataset.bgpBusy === "1" || held(element)) {
      return;
    }
    element.dataset.bgpBusy = "1";
    var url = element.getAttribute("data-bgp-live");
    fetch(url, {headers: {"X-BGP-Live": "1"}, credentials: "same-origin"})
      .then(function (response) {
        if (response.redirected) {  // logged out: the login page is not a part of this one
          element.classList.add("bgp-live-error");
          return;
        }
        var next = response.headers.get("X-BGP-Live-Url");
        if (response.status === 200 && held(element)) { return; }  // checked meanwhile
        if (next && (response.status === 200 || response.status === 204)) {
          element.setAttribute("data-bgp-live", next);
        }
        if (response.status === 200 && response.headers.get("X-BGP-Live-Parts") === "1") {
          return response.text().then(function (html) {
            applyParts(element, html);
            element.classList.remove("bgp-live-error");
          });
        }
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
        if (response.status === 204) { element.classList.remove("bgp-live-error"); }
        else { element.classList.add("bgp-live-error"); }
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
