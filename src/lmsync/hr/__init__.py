"""The HR core: accounts, logins, tokens, employees and their lifecycle (application services)."""
