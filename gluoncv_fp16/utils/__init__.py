"""Small shared helpers (graph statistics and the like); no training or detection logic."""
