# -*- test-case-name: tests.test_open_files -*-
"""
Raise the soft limit on open files to the hard limit, so thousands of
concurrent connections work without the operator tuning ulimit first.
"""

import resource


def raise_open_files_limit() -> tuple[int, int]:
    """
    Set the soft RLIMIT_NOFILE to the hard limit; return (before, after).

    If the kernel refuses (some containers do), the limit stays as it was.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, hard
