"""Video detectors: the interface, clip and frame-by-frame adapters, a frame-difference
detector and an interpretable reasoning detector."""
