"""lmsync: keeps a Learning Management System's users in step with an HR system's employees."""

__version__ = "0.1.0"
