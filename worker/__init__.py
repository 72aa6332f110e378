"""Celery workers: run pidcore analyses, cache results in Redis."""
