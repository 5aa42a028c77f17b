"""Web entry points, thin (parse, call the core, answer), wired together by ``app``: the JSON API
(``api_*``; its shapes in ``schemas``, its errors in ``problems``, its docs in ``api_docs``), the
HTML pages (``pages``, ``templates``, ``static``), and what every request goes through (the token
or session, its language, the body limit, the address check, the security headers)."""
