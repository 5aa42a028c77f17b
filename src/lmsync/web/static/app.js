/* lmsync: the pages' little script. The Content-Security-Policy allows no inline script or
   event handler, so behaviour that needs JavaScript is attached here by data attributes. */
"use strict";
document.addEventListener("click", function (event) {
  var target = event.target instanceof Element ? event.target.closest("a[data-back]") : null;
  if (target && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});
