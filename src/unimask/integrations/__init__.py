"""Integrations with other libraries; each module needs its own optional extra (``langchain``)."""
