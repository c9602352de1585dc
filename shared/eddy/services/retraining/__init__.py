"""Retraining: asks for retrains, builds and checks challengers, and judges them against the champion.

Triggers (triggers.py) and users ask on ``eddy.model-events``; the trainer (trainer.py) answers each
request with a challenger on ``eddy.model-candidates`` or rejections; trials (trials.py) ask the model
registry to promote, archive or roll back. handlers.py composes them; __main__.py runs them.
"""
