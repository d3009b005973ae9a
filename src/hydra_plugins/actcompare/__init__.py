"""actcompare's Hydra plugins (public plugin APIs only): the fused launcher and the sweep callback."""
