"""The HTTP recommendation service (``mtrs serve``): FastAPI app, model holder, metrics.

Needs the ``serve`` extra (``pip install 'mtrs[serve]'``); nothing here is imported by the
command line until ``mtrs serve`` runs.
"""
