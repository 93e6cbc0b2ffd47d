"""Entry points and machinery: sweep jobs, caches, storage, collect, analyze."""
