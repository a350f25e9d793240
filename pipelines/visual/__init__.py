"""A simulated visual world (scenes, images, templated facts) with a gold hallucination oracle."""
