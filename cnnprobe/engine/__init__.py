"""The engine: the torch code (train, step, evaluate, inspect, linear_probe, device).

Nothing here is imported on the read-only paths (listing, showing, help); the service layer
(`cnnprobe.runs`, `cnnprobe.admission`) and the study workers call it. This package file
imports nothing, so `import cnnprobe.engine.device` loads torch and no trainer.
"""
