"""Test kit for code that uses refresh_middleware (placeholder)."""
