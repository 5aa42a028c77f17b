"""The HR manager's pages: server-rendered (Jinja2 + htmx), served by the same app as the API."""
