"""Web entry points: the JSON API (later the HTML pages); thin: parse, call the core, answer."""
