"""training building blocks."""
