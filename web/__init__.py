"""The web application: the contributors' portal and the ministry's desk.

Starlette with Jinja2 templates, served by uvicorn (``obsx web``). It holds no domain logic: it
signs people in (obsx/warehouse/accounts.py), checks who may see what, and calls the same obsx functions as
the command line (validate, the inbox protocol, reconcile decide, period close, report).
"""
