"""Training a router: the loop, the losses, clustering and score smoothing, metrics, cost
calibration, changing a trained router's LLMs, and the Accelerate seam.
"""
