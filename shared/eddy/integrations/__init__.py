"""Bridges from other stream-processing frameworks to eddy's topics, each installed by an extra of its own.

``eddy.integrations.faust``: faust-streaming apps that consume and produce eddy's topics (``pip install
'eddy[faust]'``). Nothing here is imported by eddy itself: a module is imported only by the app that uses it.
"""
