// The dashboard's few behaviours beyond htmx: times in the reader's own
// zone (UTC on hover), the new batch form's fields that fit its type, and
// a banner when the live refresh cannot get the
// page's numbers (signed out, removed, server unreachable) instead of old
// numbers shown as if they were current.
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at.getTime())) {
        return;
      }
      el.title = at.toISOString().replace(".000Z", "Z") + " (UTC)";
      el.textContent = at.toLocaleString(undefined, {
        year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit"
      });
    });
  }

  function banner(text, link) {
    var el = document.getElementById("connection");
    if (!el) {
      return;
    }
    el.textContent = text + " ";
    if (link) {
      var a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      el.appendChild(a);
    }
    el.hidden = false;
  }

  function clearBanner() {
    var el = document.getElementById("connection");
    if (el) {
      el.hidden = true;
    }
  }

  function since() {
    return new Date().toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  // The new batch form shows only the parameters that fit the chosen
  // type (each field's data-fits names its types, from the server's
  // rule); a hidden field is disabled, so it is not sent.
  function fitTypes() {
    var type = document.getElementById("type");
    if (!type) {
      return;
    }
    document.querySelectorAll("[data-fits]").forEach(function (el) {
      var fits = el.getAttribute("data-fits").split(" ").indexOf(type.value) >= 0;
      el.hidden = !fits;
      el.querySelectorAll("input, select, textarea").forEach(function (control) {
        control.disabled = !fits;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    fitTypes();
    var type = document.getElementById("type");
    if (type) {
      type.addEventListener("change", fitTypes);
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    localTimes(event.target);
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.successful) {
      clearBanner();
    }
  });
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    var here = window.location.pathname + window.location.search;
    if (status === 401) {
      banner("Your session has ended: the numbers below stopped updating at " + since() + ".",
        { href: "/login?next=" + encodeURIComponent(here), text: "Sign in again" });
    } else if (status === 404) {
      banner("This page's batch no longer exists (it was removed).", { href: "/", text: "All batches" });
    } else {
      banner("The server answered with an error (" + status + "); the numbers below are from " + since() + ".");
    }
  });
  document.addEventListener("htmx:sendError", function () {
    banner("The server cannot be reached; the numbers below are from " + since() + ". Trying again.");
  });
})();
