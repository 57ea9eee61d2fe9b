"""gaitgl plugin tests."""
