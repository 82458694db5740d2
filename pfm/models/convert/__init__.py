"""Converters (our own code) from real pretrained transformers that ship inside registry
packages to ``transformers`` models, each checked against its source runtime.

Optional: they need the ``convert`` extra (``pip install -e '.[convert]'``); nothing in
the default pipeline imports them.
"""
