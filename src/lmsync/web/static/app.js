/* lmsync: the pages' little script. The Content-Security-Policy allows no inline script or
   event handler, so behaviour that needs JavaScript is attached here by data attributes.
   Every page works without it; it only makes some things smoother. */
"use strict";
document.documentElement.classList.add("js");

// "Go back" links: back in the browser's history when there is one.
document.addEventListener("click", function (event) {
  var target = event.target instanceof Element ? event.target.closest("a[data-back]") : null;
  if (target && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});

// On a phone the sections scroll sideways in the top bar: bring the current one into view.
(function () {
  var current = document.querySelector(".sections a[aria-current]");
  var strip = current ? current.closest(".sections") : null;
  if (!strip || strip.scrollWidth <= strip.clientWidth) return;
  var overflow = current.getBoundingClientRect().right - strip.getBoundingClientRect().right;
  if (overflow > 0) strip.scrollLeft += overflow + 8;
})();

// Forms marked data-autosubmit (the language switcher) are sent as soon as a choice is made;
// without JavaScript their own button sends them.
document.addEventListener("change", function (event) {
  var field = event.target;
  if (!(field instanceof HTMLSelectElement) || !field.form) return;
  if (!field.form.hasAttribute("data-autosubmit")) return;
  if (typeof field.form.requestSubmit === "function") field.form.requestSubmit();
  else field.form.submit();
});

// A flash message's code comes in the URL of the page a form redirects to (?flash=saved): the
// server shows the message once, without JavaScript. Once shown, the code leaves the address
// bar so that a reload, a bookmark or a shared link does not show the message again.
(function () {
  var url = new URL(window.location.href);
  if (!url.searchParams.has("flash")) return;
  url.searchParams.delete("flash");
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
})();
