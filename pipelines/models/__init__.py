"""models building blocks."""
