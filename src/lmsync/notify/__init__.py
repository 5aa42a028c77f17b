"""Email notifications to HR managers: what to send (``notifier``) and how (``mail``)."""
