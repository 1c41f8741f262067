"""Dataset cards, small hand-made inputs, and the local mirror used by tests and the demo."""
