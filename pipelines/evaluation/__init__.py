"""evaluation building blocks."""
