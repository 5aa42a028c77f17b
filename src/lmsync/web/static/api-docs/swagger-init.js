/* lmsync: starts Swagger UI on /docs. The docs' Content-Security-Policy allows no inline script,
   so the page hands its configuration over as JSON in the data-config attribute. */
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  var config = JSON.parse(root.getAttribute("data-config"));
  config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];
  window.ui = SwaggerUIBundle(config);
})();
