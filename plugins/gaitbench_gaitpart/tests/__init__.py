"""gaitpart plugin tests."""
