"""The operators' view: a live dashboard of the pipeline and the funds, the
review queue and dead letters, and the monthly clearing (清算) with hospitals.

``python -m services.dashboard`` serves it on ``DASHBOARD_PORT`` (8080). It
reads the settlement schema's one-bills and eligibility's claims through a
read-only pool (``repository.py``), and calls the eligibility and operations
services for the actions operators take. See ``README.md`` in this folder.
"""
