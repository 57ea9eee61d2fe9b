"""gaitmask plugin tests."""
