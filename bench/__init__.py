"""
Benchmarks of twisted-caps against the floors and ceilings around it.

C{python -m bench} starts each server on loopback, drives it with the same
load from a C load generator pinned to another core, checks every reply
byte, and prints a table with ratios to a C epoll server.
"""
