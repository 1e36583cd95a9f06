"""The learned FIT query parser: base model, prompt and target encoding, LoRA training,
serving with validation and fallback, and the one evaluator every parser version runs.

Nothing at import time touches torch, transformers or peft; the modules import them inside
the functions that need them so the daemon and the CLI start fast.
"""
