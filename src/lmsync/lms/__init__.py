"""LMS connectors and the embedded LMS used by the demo and the tests."""
