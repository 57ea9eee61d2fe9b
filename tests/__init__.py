"""gaitbench core tests."""
