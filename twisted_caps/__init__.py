"""
twisted-caps: the capitalization service of the networking course.

A client sends "hello world" over TCP or UDP and gets "HELLO WORLD" back,
with Unicode's full upper-case mapping and every other byte unchanged.
"""

__version__ = "1.0.0"
