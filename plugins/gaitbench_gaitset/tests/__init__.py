"""GaitSet plugin tests."""
