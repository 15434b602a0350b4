/* celery-bgp console, Recurring page: count the next runs down and the last runs up, every
 * second, without asking the server (its live answer is 204 while nothing changed).
 * Elements with data-bgp-at="<epoch ms>" and data-bgp-rel="next" or "ago" inside a
 * table with data-bgp-now="<server epoch ms at render>" (the browser's clock may differ). */
(function () {
  "use strict";

  function span(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) { return seconds + "s"; }
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) { return minutes + "m " + String(seconds % 60).padStart(2, "0") + "s"; }
    var hours = Math.floor(minutes / 60);
    if (hours < 48) { return hours + "h " + String(minutes % 60).padStart(2, "0") + "m"; }
    return Math.floor(hours / 24) + "d " + (hours % 24) + "h";
  }

  function tick() {
    document.querySelectorAll("table[data-bgp-now]").forEach(function (table) {
      if (!table.dataset.bgpSeen) { table.dataset.bgpSeen = String(Date.now()); }
      var now = Number(table.dataset.bgpNow) + (Date.now() - Number(table.dataset.bgpSeen));
      table.querySelectorAll("[data-bgp-at]").forEach(function (element) {
        var seconds = (Number(element.dataset.bgpAt) - now) / 1000;
        if (element.dataset.bgpRel === "next") {
          element.textContent = seconds > 0 ? "in " + span(seconds) : "due now";
        } else {
          element.textContent = span(-seconds) + " ago";
        }
      });
    });
  }

  window.setInterval(tick, 1000);
}());
